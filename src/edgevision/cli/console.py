"""Shared consoles and option aliases for the commands.

In a terminal, tables fit the window as rich lays them out. When a stream is not a
terminal (a pipe or a file), tables are printed in full: a wide console, and every column
folds instead of eliding, so ``edgevision zoo list | grep movenet`` sees whole names.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, ConsoleRenderable, Group, RenderHook
from rich.table import Table

from edgevision.api import load

PIPE_WIDTH = 4096  # console width when the stream is not a terminal: wide enough for any table


class FullTables(RenderHook):
    """Make every table in what is printed show each cell in full (no ellipsis, no max width)."""

    def process_renderables(self, renderables: list[ConsoleRenderable]) -> list[ConsoleRenderable]:
        for renderable in renderables:
            unelide(renderable)
        return renderables


def unelide(renderable: Any) -> None:
    """Set the columns of ``renderable`` (a table, or tables inside groups) to fold, never elide."""
    if isinstance(renderable, Group):
        for child in renderable.renderables:
            unelide(child)
    elif isinstance(renderable, Table):
        for column in renderable.columns:
            column.overflow, column.max_width, column.no_wrap = "fold", None, False


def make_console(*, stderr: bool = False, **kwargs) -> Console:
    """A console that keeps rich's layout in a terminal and prints tables in full elsewhere."""
    console = Console(stderr=stderr, **kwargs)
    if not console.is_terminal:
        console.width = PIPE_WIDTH
        console.push_render_hook(FullTables())
    return console


stdout = make_console()
stderr = make_console(stderr=True, soft_wrap=True)


@contextmanager
def json_stdout() -> Iterator[None]:
    """Send everything written to standard output (by libraries too) to stderr while the body runs.

    Use it around the work of a ``--json`` command, then ``print_json`` the one document:
    a stray print of a converter or runtime cannot end up inside it.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def print_json(payload: Any) -> None:
    """Write ``payload`` to standard output as one indented JSON document."""
    text = payload if isinstance(payload, str) else json.dumps(payload, indent=2, default=_json_default)
    sys.stdout.write(text.rstrip("\n") + "\n")
    sys.stdout.flush()


JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document to standard output (other text goes to stderr).")
]
BackendOption = Annotated[
    str | None,
    typer.Option(
        "--backend", "-b", help="Runtime: onnxruntime, openvino, litert, torch or ncnn (default: the model's)."
    ),
]
DeviceOption = Annotated[
    str | None,
    typer.Option(
        "--device",
        help="OpenVINO device (CPU, GPU, NPU, AUTO, HETERO:..., MULTI:...) or LiteRT delegate (edgetpu); "
        "see edgevision devices.",
    ),
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


def load_model(model: str, **options: Any):
    """``edgevision.load(model, **options)`` under a status line, warning when the weights are random."""
    with stderr.status(f"loading {model}"):
        loaded = load(model, **options)
    if loaded.random_weights:
        stderr.print(f"[bold yellow]warning:[/] {model} runs with random weights: its predictions are not real.")
    return loaded
