"""``edgevision run MODEL --source SRC``: live or recorded video with tracking, zones and alerts."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from edgevision.api import (
    Progress,
    RuleConfig,
    RunConfig,
    RunOutputs,
    RunSummary,
    StreamConfig,
    check_run_outputs,
    parse_line,
    parse_zone,
    resolve_model,
)
from edgevision.api import run as run_model
from edgevision.cli.card import card_options
from edgevision.cli.console import (
    BackendOption,
    DeviceOption,
    RandomWeightsOption,
    ThreadsOption,
    WeightsOption,
    load_model,
    stderr,
)


def _quiet_video_libraries() -> None:
    """Keep FFmpeg's and OpenCV's own messages (we report stream and frame problems ourselves)."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def _classes(text: str) -> tuple[str, ...] | None:
    names = tuple(c.strip() for c in text.split(",") if c.strip())
    return None if names in ((), ("all",)) else names


def progress_line(p: Progress) -> str:
    """One line of live progress: frames, fps, per-stage ms, latency, drops, events."""
    stages = " ".join(f"{k} {v:.0f}ms" for k, v in p.stage_ms.items())
    latency = f"latency {p.latency_ms:.0f}ms" if p.latency_ms is not None else ""
    extra = "".join(
        f" {name} {n}"
        for name, n in (("dropped", p.dropped), ("corrupt", p.corrupt), ("reconnects", p.reconnects))
        if n
    )
    return f"run: {p.frames} frames {p.fps:.1f} fps | {stages} | {latency}{extra} | events {p.events}"


class _Reporter:
    """Live progress: a status line on a terminal, a plain line every few seconds otherwise."""

    def __init__(self, *, every: float = 2.0) -> None:
        self.terminal = stderr.is_terminal
        self.every = every
        self._last = 0.0
        self._status = stderr.status("run: starting") if self.terminal else None

    def __enter__(self) -> _Reporter:
        if self._status is not None:
            self._status.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._status is not None:
            self._status.__exit__(*exc)

    def __call__(self, progress: Progress) -> None:
        if self._status is not None:
            self._status.update(progress_line(progress))
        elif time.monotonic() - self._last >= self.every:
            self._last = time.monotonic()
            print(progress_line(progress), file=sys.stderr, flush=True)


def _print_summary(summary: RunSummary) -> None:
    stages = ", ".join(f"{k} {v:.1f} ms" for k, v in summary.stage_ms.items())
    if summary.workers > 1:
        kind = "worker processes" if summary.isolated else "workers"
        stages += f" (inference: one frame in one of {summary.workers} {kind})"
    elif summary.isolated:
        stages += " (inference in a process of its own)"
    stderr.print(
        f"{summary.frames} frames in {summary.seconds:.1f} s ({summary.fps:.1f} fps); "
        f"end-to-end latency p50 {summary.latency_p50_ms} ms, p95 {summary.latency_p95_ms} ms; stages: {stages}",
        highlight=False,
    )
    problems = {"dropped": summary.dropped, "corrupt (skipped)": summary.corrupt, "reconnects": summary.reconnects}
    if any(problems.values()):
        stderr.print("; ".join(f"{k}: {v}" for k, v in problems.items() if v), highlight=False)
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(summary.event_counts.items())) or "none"
    stderr.print(f"events: {summary.events} ({counts})", highlight=False)
    for name, where in summary.outputs.items():
        stderr.print(f"{name}: {where}", highlight=False, markup=False)
    if summary.stopped_by:
        stderr.print(f"stopped by {summary.stopped_by}; every output above is complete", highlight=False)


@card_options
def run(
    model: Annotated[str, typer.Argument(help="Zoo model name or model file.")],
    source: Annotated[
        str,
        typer.Option(
            "--source",
            "-s",
            help="Video file, image folder/glob, camera index or /dev/videoN, or rtsp://, http:// URL.",
        ),
    ],
    zone: Annotated[
        list[str] | None,
        typer.Option("--zone", "-z", help="NAME:x1,y1,x2,y2,x3,y3,... polygon (pixels or 0-1 fractions); repeatable."),
    ] = None,
    line: Annotated[
        list[str] | None, typer.Option("--line", "-l", help="NAME:x1,y1,x2,y2[:in|out|both] counting line; repeatable.")
    ] = None,
    dwell: Annotated[
        float | None, typer.Option("--dwell", min=0, help="Also fire when a track stays in a zone this many seconds.")
    ] = None,
    margin: Annotated[
        float,
        typer.Option(
            "--margin",
            min=0.0,
            help="How far beyond a line or zone border the feet must go, as a fraction of box height.",
        ),
    ] = RuleConfig.margin,
    settle_frames: Annotated[
        int,
        typer.Option("--settle-frames", min=1, help="Frames in a row on the new side before a line or zone fires."),
    ] = RuleConfig.settle_frames,
    classes: Annotated[
        str, typer.Option("--classes", help="Comma-separated classes to track and alert on, or 'all'.")
    ] = "person",
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Annotated video (.mp4 mp4v, .avi MJPG) or image folder.")
    ] = None,
    json_path: Annotated[str | None, typer.Option("--json", help="Detections as JSON lines ('-' = stdout).")] = None,
    events: Annotated[
        Path | None, typer.Option("--events", help="Events as JSON lines, snapshots in <stem>-snapshots/ beside it.")
    ] = None,
    serve: Annotated[
        int | None,
        typer.Option(
            "--serve", min=0, max=65535, help="Serve the annotated stream as MJPEG on http://127.0.0.1:PORT/."
        ),
    ] = None,
    stats: Annotated[Path | None, typer.Option("--stats", help="Write the run summary as JSON here.")] = None,
    stride: Annotated[int, typer.Option("--stride", min=1, help="Process every N-th frame of a file.")] = 1,
    realtime: Annotated[
        bool, typer.Option("--realtime", help="Read a file at its own frame rate, dropping frames like a camera.")
    ] = False,
    max_frames: Annotated[int | None, typer.Option("--max-frames", min=1, help="Stop after this many frames.")] = None,
    duration: Annotated[
        float | None, typer.Option("--duration", min=0, help="Stop after this many seconds of source.")
    ] = None,
    connect_timeout: Annotated[
        float, typer.Option("--connect-timeout", min=0.1, help="Seconds to wait for a stream or camera to connect.")
    ] = 20.0,
    give_up_after: Annotated[
        float,
        typer.Option("--give-up-after", min=0.1, help="Seconds a lost stream may stay away before the run stops."),
    ] = 120.0,
    backend: BackendOption = None,
    device: DeviceOption = None,
    threads: ThreadsOption = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            help="Infer this many frames at once, each on its own copy of the model (OpenVINO: its own "
            "stream) sharing --threads; often more frames a second for small models on small CPUs.",
        ),
    ] = 1,
    isolate: Annotated[
        bool,
        typer.Option(
            "--isolate",
            help="Infer in a process of its own (one per worker), so tracking, drawing and writing never hold "
            "inference up on Python's interpreter lock; most useful when --threads leaves a core free.",
        ),
    ] = False,
    weights: WeightsOption = None,
    random_weights: RandomWeightsOption = False,
    card=None,
) -> None:
    """Track objects in a video, camera or stream; fire zone and line events; write and serve the result."""
    _quiet_video_libraries()
    config = RunConfig(
        zones=tuple(parse_zone(z, dwell_seconds=dwell) for z in zone or ()),
        lines=tuple(parse_line(ln) for ln in line or ()),
        classes=_classes(classes),
        rules=RuleConfig(margin=margin, settle_frames=settle_frames),
        stride=stride,
        realtime=realtime,
        max_frames=max_frames,
        duration=duration,
        stream=StreamConfig(connect_timeout=connect_timeout, give_up_after=give_up_after),
    )
    outputs = RunOutputs(video=out, json_lines=json_path, events=events, serve_port=serve, stats=stats)
    resolve_model(model)
    check_run_outputs(source, outputs)
    loaded = load_model(
        model,
        backend=backend,
        device=device,
        threads=threads,
        workers=workers,
        isolate=isolate,
        weights=weights,
        random_weights=random_weights,
        card=card,
    )
    with loaded, _Reporter() as reporter:
        summary = run_model(loaded, source, config=config, outputs=outputs, on_progress=reporter)
    _print_summary(summary)
