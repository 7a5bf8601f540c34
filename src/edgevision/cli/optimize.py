"""``edgevision optimize MODEL``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgevision import api
from edgevision.cli.card import (
    BgrOption,
    CardOption,
    DecoderOption,
    InputSizeOption,
    IouOption,
    LabelsOption,
    MeanOption,
    ResizeOption,
    ScoreOption,
    StdOption,
    TaskOption,
    card_choice,
)
from edgevision.cli.console import stderr, stdout
from edgevision.cli.convert import RandomWeightsOption, WeightsOption


def optimize(
    model: Annotated[str, typer.Argument(help="Zoo model name or model file (.onnx, .tflite).")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Output .onnx file (default runs/optimize/MODEL.onnx).")
    ] = None,
    weights: WeightsOption = None,
    random_weights: RandomWeightsOption = False,
    card: CardOption = None,
    decoder: DecoderOption = None,
    task: TaskOption = None,
    input_size: InputSizeOption = None,
    mean: MeanOption = None,
    std: StdOption = None,
    bgr: BgrOption = None,
    resize: ResizeOption = None,
    labels: LabelsOption = None,
    score_threshold: ScoreOption = None,
    iou_threshold: IouOption = None,
) -> None:
    """Simplify and fuse an ONNX graph; print op counts before/after and the parity check."""
    with stderr.status(f"optimizing {model}"):
        result = api.optimize(
            model, output=output, weights=weights, random_weights=random_weights, card=card_choice(locals())
        )
    stdout.print(result.report.table(), highlight=False)
    if result.report.parity is not None:
        stdout.print(result.report.parity.table(), highlight=False)
    stderr.print(f"wrote {result.path}")
