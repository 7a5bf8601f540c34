"""``edgevision predict MODEL SOURCE...``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from edgevision.api import (
    check_predict_outputs,
    count_predict_frames,
    is_video,
    predict_to_files,
    resolve_model,
)
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


def _default_output(sources: list[str]) -> Path:
    """``runs/predict/<stem of the first source>``, a ``.mp4`` file when the only source is a video."""
    first = sources[0]
    stem = Path(first.split("*")[0].rstrip("/") or "images").stem or "images"
    return Path("runs/predict") / (f"{stem}.mp4" if len(sources) == 1 and is_video(first) else stem)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]predict"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[objects]}"),
        console=stderr,
        transient=False,
    )


def _what(sources: list[str]) -> str:
    return sources[0] if len(sources) == 1 else f"{len(sources)} sources"


@card_options
def predict(
    model: Annotated[str, typer.Argument(help="Zoo model name or model file (.onnx, .tflite, .xml, .pt2).")],
    sources: Annotated[
        list[str],
        typer.Argument(
            help="Images, folders or globs of images (quote globs), and video files; a file named twice is read once.",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Annotated video file when the only source is a video; else a folder: images under their "
            "file name, with parent folders when two share one (day/a.jpg, night/a.jpg), videos as annotated .mp4/.avi.",
        ),
    ] = None,
    json_path: Annotated[
        str | None, typer.Option("--json", help="Write one JSON line per image/frame here ('-' = stdout).")
    ] = None,
    raw_out: Annotated[
        Path | None,
        typer.Option(
            "--raw-out",
            help="Models with no decoder: write every output tensor of every image to this .npz "
            "(keys <image>/<output>, <video>/<frame>/<output>).",
        ),
    ] = None,
    every: Annotated[
        int, typer.Option("--every", min=1, help="Videos: run on every N-th frame (default: every frame).")
    ] = 1,
    max_frames: Annotated[
        int | None, typer.Option("--max-frames", min=1, help="Videos: at most this many frames of each one.")
    ] = None,
    no_save: Annotated[bool, typer.Option("--no-save", help="Do not write annotated images/video.")] = False,
    backend: BackendOption = None,
    device: DeviceOption = None,
    threads: ThreadsOption = None,
    weights: WeightsOption = None,
    random_weights: RandomWeightsOption = False,
    card=None,
) -> None:
    """Run a model on images, folders, globs and videos; write annotated output and JSON lines.

    Every image is read, and every frame of each video unless --every or --max-frames says
    otherwise. A model with no decoder gives its raw output tensors: their values are in the
    JSON lines (up to 1000 per tensor, else the first 20 and a note), all of them in
    --raw-out, and its annotated images carry a red band saying they hold no decoded objects.
    """
    annotated = None if no_save else (output or _default_output(sources))
    resolve_model(model)
    check_predict_outputs(sources, annotated=annotated, json_lines=json_path, raw_out=raw_out)
    total = count_predict_frames(sources, every=every, max_frames=max_frames)
    loaded = load_model(
        model,
        backend=backend,
        device=device,
        threads=threads,
        weights=weights,
        random_weights=random_weights,
        card=card,
    )
    if loaded.task == "raw":
        stderr.print(
            f"note: {model} has no decoder: the JSON lines hold its raw output tensors, not objects "
            "(describe it with --card FILE or --decoder to decode it).",
            highlight=False,
            markup=False,
        )
    with _progress() as progress:
        task = progress.add_task("predict", total=total, objects="")

        def on_frame(frame, prediction) -> None:
            progress.update(
                task, advance=1, objects=f"{len(prediction)} {'outputs' if prediction.task == 'raw' else 'objects'}"
            )

        done = predict_to_files(
            loaded,
            sources,
            annotated=annotated,
            json_lines=json_path,
            raw_out=raw_out,
            every=every,
            max_frames=max_frames,
            on_frame=on_frame,
        )
    _report(done, sources=sources, model=model, annotated=annotated, raw_out=raw_out)


def _report(done, *, sources: list[str], model: str, annotated: Path | None, raw_out: Path | None) -> None:
    where = f"; annotated output: {annotated}" if annotated else ""
    where += f"; raw outputs: {raw_out}" if raw_out else ""
    files = f" ({done.files} files)" if done.files > 1 else ""
    stderr.print(
        f"{done.frames} frame(s) from {_what(sources)}{files} with {model}{where}", highlight=False, markup=False
    )
    if done.corrupt:
        stderr.print(f"corrupt (skipped): {done.corrupt} frame(s) that could not be decoded", highlight=False)
