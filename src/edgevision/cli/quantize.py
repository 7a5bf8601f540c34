"""``edgevision quantize MODEL --backend ort|openvino|litert --precision ...``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from edgevision import api
from edgevision.api import BudgetNotMetError, QuantizeOptions, QuantizeResult
from edgevision.cli.card import card_options
from edgevision.cli.console import stderr, stdout


@card_options
def quantize(
    model: Annotated[str, typer.Argument(help="Zoo model name or ONNX file.")],
    backend: Annotated[
        str, typer.Option("--backend", "-b", help="Quantization backend: ort, openvino or litert.")
    ] = "ort",
    precision: Annotated[
        str, typer.Option("--precision", "-p", help="fp16, int8-dynamic, int8, or auto (int8 within --max-drop).")
    ] = "int8",
    calib: Annotated[
        str | None, typer.Option("--calib", help="Calibration images: folder, glob or video file.")
    ] = None,
    holdout: Annotated[
        str | None,
        typer.Option(
            "--holdout",
            help="More held-out images for agreement, added to other images of --calib and the sample photos "
            "(pose models: to the photos of large people and their views; --calib then only calibrates).",
        ),
    ] = None,
    count: Annotated[int, typer.Option("--count", min=1, help="Calibration images to use.")] = 64,
    method: Annotated[
        str | None,
        typer.Option(
            "--method",
            help="Calibration method (default: the backend's best; ort: minmax, percentile, entropy; "
            "openvino: mean-minmax, minmax, percentile, histogram).",
        ),
    ] = None,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="Layer to keep in float (repeatable).")] = None,
    max_drop: Annotated[
        float,
        typer.Option(
            "--max-drop",
            min=0.0,
            max=1.0,
            help="Largest agreement drop: auto keeps layers float until it holds; int8 reports whether it holds.",
        ),
    ] = api.DEFAULT_MAX_DROP,
    strict: Annotated[bool, typer.Option("--strict", help="Exit non-zero when the budget cannot be met.")] = False,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Where to write the model.")] = None,
    threads: Annotated[
        int, typer.Option("--threads", "-t", min=1, help="Threads of the agreement and latency checks.")
    ] = 2,
    weights: Annotated[Path | None, typer.Option("--weights", help="Checkpoint of a PyTorch zoo model.")] = None,
    random_weights: Annotated[
        bool,
        typer.Option("--random-weights", help="PyTorch zoo model with seeded random weights (size and speed only)."),
    ] = False,
    card=None,
) -> None:
    """Quantize a model, check it against float on held-out images, write it with its metadata."""
    options = QuantizeOptions(
        precision=precision,
        max_drop=max_drop,
        strict=strict,
        calib=calib,
        calib_count=count,
        holdout=holdout,
        threads=threads,
        method=method,
        exclude=tuple(exclude or ()),
    )
    try:
        result = api.quantize(
            model,
            backend=backend,
            output=output,
            options=options,
            weights=weights,
            random_weights=random_weights,
            card=card,
            progress=_say,
        )
    except BudgetNotMetError as exc:
        show(exc.result)
        stderr.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(1)
    show(result)


def _say(line: str) -> None:
    stderr.print(f"[dim]•[/] {escape(line)}", highlight=False)


def show(result: QuantizeResult) -> None:
    """Print the outcome: file, size ratio, agreement, parity, speed, attempts, warnings."""
    table = Table.grid(padding=(0, 2))
    table.add_row("[bold]model", str(result.output))
    table.add_row(
        "[bold]size",
        f"{result.output_bytes / 1e6:.2f} MB = {result.size_ratio:.2f}x of {result.source_bytes / 1e6:.2f} MB",
    )
    if result.agreement is not None:
        table.add_row("[bold]agreement", f"{result.agreement:.3f} ({result.metric})")
    for name, figures in result.parity.items():
        table.add_row(
            "[bold]parity",
            f"{name}: cosine {figures['cosine']:.4f}, SQNR {figures['sqnr_db']:.1f} dB, "
            f"max abs {figures['max_abs']:.3g}",
        )
    if result.latency_ms:
        on = {"fp32": result.latency_fp32_runtime, result.precision: result.backend}
        shown = [f"{k} {v:.1f} ms" + (f" ({on[k]})" if on.get(k) else "") for k, v in result.latency_ms.items()]
        table.add_row("[bold]p50", ", ".join(shown))
    if result.excluded:
        table.add_row(
            "[bold]kept float",
            f"{len(result.excluded)} layers: {', '.join(result.excluded[:6])}"
            f"{' …' if len(result.excluded) > 6 else ''}",
        )
    table.add_row("[bold]took", f"{result.seconds:.1f} s")
    stdout.print(table)
    for warning in result.warnings:
        stderr.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False)
