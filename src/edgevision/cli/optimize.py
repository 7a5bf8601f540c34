"""``edgevision optimize MODEL``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgevision import api
from edgevision.cli.card import card_options
from edgevision.cli.console import stderr, stdout
from edgevision.cli.convert import RandomWeightsOption, WeightsOption


@card_options
def optimize(
    model: Annotated[str, typer.Argument(help="Zoo model name or model file (.onnx, .tflite).")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Output .onnx file (default runs/optimize/MODEL.onnx).")
    ] = None,
    weights: WeightsOption = None,
    random_weights: RandomWeightsOption = False,
    card=None,
) -> None:
    """Simplify and fuse an ONNX graph; print op counts before/after and the parity check."""
    with stderr.status(f"optimizing {model}"):
        result = api.optimize(model, output=output, weights=weights, random_weights=random_weights, card=card)
    stdout.print(result.report.table(), highlight=False)
    if result.report.parity is not None:
        stdout.print(result.report.parity.table(), highlight=False)
    stderr.print(f"wrote {result.path}")
