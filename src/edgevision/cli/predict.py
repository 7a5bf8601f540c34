"""``edgevision predict MODEL SOURCE``."""

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

from edgevision.api import check_predict_outputs, count_frames, is_video, load, predict_to_files, resolve_model
from edgevision.cli.console import (
    BackendOption,
    RandomWeightsOption,
    ThreadsOption,
    WeightsOption,
    stderr,
)


def _default_output(source: str) -> Path:
    stem = Path(source.split("*")[0].rstrip("/") or "images").stem or "images"
    return Path("runs/predict") / (f"{stem}.mp4" if is_video(source) else stem)


def predict(
    model: Annotated[str, typer.Argument(help="Zoo model name or model file (.onnx, .tflite, .xml, .pt2).")],
    source: Annotated[str, typer.Argument(help="Image, folder or glob of images, or video file.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Annotated video file or image folder.")] = None,
    json_path: Annotated[
        str | None, typer.Option("--json", help="Write one JSON line per image/frame here ('-' = stdout).")
    ] = None,
    no_save: Annotated[bool, typer.Option("--no-save", help="Do not write annotated images/video.")] = False,
    backend: BackendOption = None,
    threads: ThreadsOption = None,
    weights: WeightsOption = None,
    random_weights: RandomWeightsOption = False,
) -> None:
    """Run a model on images or a video; write annotated output and JSON lines."""
    annotated = None if no_save else (output or _default_output(source))
    resolve_model(model)
    check_predict_outputs(source, annotated=annotated, json_lines=json_path)
    total = count_frames(source)
    with stderr.status(f"loading {model}"):
        loaded = load(model, backend=backend, threads=threads, weights=weights, random_weights=random_weights)
    if loaded.random_weights:
        stderr.print(f"[bold yellow]warning:[/] {model} runs with random weights: its predictions are not real.")
    progress = Progress(
        TextColumn("[bold]predict"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[objects]}"),
        console=stderr,
        transient=False,
    )
    with progress:
        task = progress.add_task("predict", total=total, objects="")

        def on_frame(frame, prediction) -> None:
            progress.update(
                task, advance=1, objects=f"{len(prediction)} {'outputs' if prediction.task == 'raw' else 'objects'}"
            )

        done = predict_to_files(loaded, source, annotated=annotated, json_lines=json_path, on_frame=on_frame)
    where = f"; annotated output: {annotated}" if annotated else ""
    stderr.print(f"{done.frames} frame(s) from {source} with {model}{where}", highlight=False, markup=False)
    if done.corrupt:
        stderr.print(f"corrupt (skipped): {done.corrupt} frame(s) that could not be decoded", highlight=False)
