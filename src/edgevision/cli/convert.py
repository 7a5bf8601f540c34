"""``edgevision convert MODEL --to onnx|openvino|tflite``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgevision.cli.console import stderr, stdout

WeightsOption = Annotated[
    Path | None, typer.Option("--weights", help="Checkpoint of a PyTorch zoo model (yolox-*, openpose-body).")
]
RandomWeightsOption = Annotated[
    bool, typer.Option("--random-weights", help="PyTorch zoo model with seeded random weights (size/speed only).")
]


def convert(
    model: Annotated[str, typer.Argument(help="Zoo model name or model file (.onnx, .tflite).")],
    to: Annotated[str, typer.Option("--to", help="Target format: onnx, openvino or tflite.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Output file (default runs/convert/MODEL.<ext>).")
    ] = None,
    weights: WeightsOption = None,
    random_weights: RandomWeightsOption = False,
) -> None:
    """Convert a model, check it against the source on real photos, save it with metadata."""
    from edgevision.convert.api import convert_model

    with stderr.status(f"converting {model} to {to}"):
        result = convert_model(model, to=to, output=output, weights=weights, random_weights=random_weights)
    stdout.print(result.parity.table(), highlight=False)
    stderr.print(f"wrote {result.path} ({result.parity.report.file_bytes / 1e6:.1f} MB)")
