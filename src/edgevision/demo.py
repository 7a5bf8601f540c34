"""The whole story in one call: pull, benchmark variants, pick one, run it on live-style video.

``run_demo`` pulls the default detector and the sample pedestrian video, builds and times
a few variants of the detector (a short run), picks the recommended one (fastest within
the accuracy budget), and runs it over the video with a no-entry zone on the lawn and a
counting line across the path. Everything lands in one folder.

>>> import edgevision.api as ev
>>> summary = ev.demo("runs/demo")           # doctest: +SKIP
>>> summary.variant, summary.run.events      # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgevision.benchmark.api import BenchOptions, BenchResult, TimingOptions, run_bench
from edgevision.checks import check_threads, check_workers, output_folder
from edgevision.compare import DEFAULT_MAX_DROP
from edgevision.files import write_atomic
from edgevision.pipeline.run import RunConfig, RunOutputs, run_pipeline
from edgevision.pipeline.stats import RunSummary
from edgevision.pipeline.zones import parse_line, parse_zone
from edgevision.samples import DEFAULT_VIDEO, PHOTOS, sample_path
from edgevision.zoo import pull
from edgevision.zoo.assemble import load_workers

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoOptions:
    """What the demo runs; the defaults finish in a few minutes on a 2-core machine."""

    model: str = "nanodet-m"
    variants: str = "ort-fp32,ort-int8,openvino-fp32,openvino-int8"
    threads: int = 2
    workers: int = 2  # frames the video run infers at once, sharing ``threads`` (see ``run --workers``)
    max_drop: float = DEFAULT_MAX_DROP
    # vtest.avi is 768x576: the lawn in the foreground, the path running across the middle.
    zone: str = "no-entry-lawn:0,310,420,335,640,576,0,576"
    line: str = "path-count:560,150,560,420:both"
    max_frames: int | None = None  # the whole video (795 frames) by default
    timing: TimingOptions = field(default_factory=lambda: TimingOptions(rounds=3, round_seconds=1.0))


@dataclass
class DemoSummary:
    """What the demo produced and measured."""

    model: str
    variant: str
    variant_file: str
    variant_p50_ms: float | None
    baseline_p50_ms: float | None
    agreement: float | None
    run: RunSummary
    outputs: dict[str, str]

    def lines(self) -> list[str]:
        """The short summary printed at the end."""
        speed = ""
        if self.variant_p50_ms and self.baseline_p50_ms:
            speed = f", {self.baseline_p50_ms / self.variant_p50_ms:.2f}x the speed of ONNX Runtime fp32"
        agreement = f", agreement with fp32 {self.agreement:.3f}" if self.agreement is not None else ""
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(self.run.event_counts.items())) or "none"
        stopped = f" (stopped by {self.run.stopped_by})" if self.run.stopped_by else ""
        return [
            f"recommended variant: {self.variant} (p50 {self.variant_p50_ms:.1f} ms{speed}{agreement})"
            if self.variant_p50_ms
            else f"recommended variant: {self.variant}",
            f"video: {self.run.frames} frames{stopped} at {self.run.fps:.1f} fps, end-to-end latency p50 "
            f"{self.run.latency_p50_ms} ms, p95 {self.run.latency_p95_ms} ms",
            f"events: {self.run.events} ({counts})",
            *(f"{name}: {where}" for name, where in self.outputs.items()),
        ]


def _record(result: BenchResult, key: str | None) -> dict:
    return next((r for r in result.records if r["variant"] == key), {})


def _p50(record: dict, threads: int) -> float | None:
    timing = record.get("threads", {}).get(str(threads), {})
    return (timing.get("latency") or {}).get("p50")


def _agreement(record: dict) -> float | None:
    value = record.get("agreement")
    return value.get("value") if isinstance(value, dict) else value


def run_demo(
    output: Path = Path("runs/demo"),
    *,
    options: DemoOptions = DemoOptions(),
    say: Callable[[str], None] = logger.info,
) -> DemoSummary:
    """Pull, benchmark, pick the recommended variant and run it on the sample video."""
    output = output_folder(output, what="the demo folder")
    check_threads([options.threads])
    check_workers(options.workers)  # found now, not after the bench
    say(f"pulling {options.model} and the sample media")
    video = sample_path(DEFAULT_VIDEO)
    photos = [sample_path(name) for name in PHOTOS]
    pull(options.model)
    say("benchmarking variants (short run)")
    settings = BenchOptions(
        variants=options.variants,
        threads=(options.threads,),
        data=str(photos[0].parent / "*.jpg"),
        max_drop=options.max_drop,
        timing=options.timing,
    )
    bench = run_bench(options.model, output=output / "bench", options=settings, progress=say)
    chosen = _record(bench, bench.recommended or "ort-fp32")
    say(f"running {chosen['variant']} on {video.name}")
    summary = _run_video(chosen["file"], video, output, options, say)
    demo = DemoSummary(
        options.model,
        chosen["variant"],
        chosen["file"],
        _p50(chosen, options.threads),
        _p50(_record(bench, "ort-fp32"), options.threads),
        _agreement(chosen),
        summary,
        {"report": str(bench.paths.get("html", "")), **summary.outputs},
    )
    write_atomic(output / "summary.json", json.dumps(asdict(demo), indent=2, default=str).encode())
    write_atomic(output / "summary.txt", ("\n".join(demo.lines()) + "\n").encode())
    return demo


def _run_video(model_file: str, video: Path, output: Path, options: DemoOptions, say) -> RunSummary:
    predictors = load_workers(model_file, workers=options.workers, threads=options.threads)
    config = RunConfig(
        zones=(parse_zone(options.zone),),
        lines=(parse_line(options.line),),
        classes=("person",),
        max_frames=options.max_frames,
    )
    outputs = RunOutputs(
        video=output / "vtest-annotated.mp4",
        json_lines=str(output / "detections.jsonl"),
        events=output / "events.jsonl",
        stats=output / "stats.json",
    )
    return run_pipeline(predictors, str(video), config, outputs, on_progress=lambda p: None)
