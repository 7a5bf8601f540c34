"""Shared consoles and option aliases for the commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

stdout = Console()
stderr = Console(stderr=True, soft_wrap=True)

BackendOption = Annotated[
    str | None,
    typer.Option("--backend", "-b", help="Runtime: onnxruntime, openvino, litert or torch (default: the model's)."),
]
ThreadsOption = Annotated[
    int | None, typer.Option("--threads", "-t", min=1, help="Inference threads (default: the runtime's).")
]
WeightsOption = Annotated[
    Path | None, typer.Option("--weights", "-w", help="Checkpoint for PyTorch zoo models (official layout).")
]
RandomWeightsOption = Annotated[
    bool,
    typer.Option("--random-weights", help="Build a PyTorch zoo model with random weights (size/speed only)."),
]
