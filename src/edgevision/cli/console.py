"""Shared consoles and option aliases for the commands."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

stdout = Console()
stderr = Console(stderr=True)

BackendOption = Annotated[
    str | None,
    typer.Option("--backend", "-b", help="Runtime: onnxruntime, openvino, litert or torch (default: the model's)."),
]
ThreadsOption = Annotated[
    int | None, typer.Option("--threads", "-t", min=1, help="Inference threads (default: the runtime's).")
]
