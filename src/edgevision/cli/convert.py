"""``edgevision convert MODEL --to onnx|openvino|tflite|ncnn``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgevision import api
from edgevision.cli.card import card_options
from edgevision.cli.console import stderr, stdout

WeightsOption = Annotated[
    Path | None, typer.Option("--weights", help="Checkpoint of a PyTorch zoo model (yolox-*, openpose-body).")
]
RandomWeightsOption = Annotated[
    bool, typer.Option("--random-weights", help="PyTorch zoo model with seeded random weights (size/speed only).")
]


@card_options
def convert(
    model: Annotated[str, typer.Argument(help="Zoo model name or model file (.onnx, .tflite).")],
    to: Annotated[str, typer.Option("--to", help="Target format: onnx, openvino, tflite or ncnn.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Output file (default runs/convert/MODEL.<ext>).")
    ] = None,
    weights: WeightsOption = None,
    random_weights: RandomWeightsOption = False,
    opset: Annotated[int, typer.Option(help="ONNX opset when exporting a PyTorch zoo model.")] = 17,
    dynamic_batch: Annotated[
        bool, typer.Option("--dynamic-batch/--static-batch", help="Batch dimension of a PyTorch export.")
    ] = False,
    card=None,
) -> None:
    """Convert a model, check it against the source on real photos, save it with metadata."""
    export = api.ExportOptions(opset=opset, dynamic_batch=dynamic_batch)
    with stderr.status(f"converting {model} to {to}"):
        result = api.convert(
            model,
            to=to,
            output=output,
            weights=weights,
            random_weights=random_weights,
            export=export,
            card=card,
        )
    for line in result.export_lines():
        stdout.print(line, highlight=False)
    stdout.print(result.parity.table(), highlight=False)
    if result.meta.random_weights:
        stderr.print("[bold yellow]note:[/] random weights: this file is for size and speed studies only.")
    stderr.print(f"wrote {result.path} ({result.parity.report.file_bytes / 1e6:.1f} MB)")
