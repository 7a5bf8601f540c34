"""``edgevision demo``: pull, benchmark, pick, and run the default detector on the sample video."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from edgevision import api
from edgevision.cli.console import stderr, stdout


def demo(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder for the report, video, events, summary.")
    ] = Path("runs/demo"),
    threads: Annotated[int, typer.Option("--threads", "-t", min=1, help="Inference threads.")] = 2,
    workers: Annotated[
        int,
        typer.Option("--workers", min=1, max=64, help="Frames the video run infers at once, sharing --threads."),
    ] = 2,
) -> None:
    """The whole story in one command on the built-in defaults."""
    with stderr.status("demo: starting") as status:

        def say(line: str) -> None:
            status.update(f"demo: {escape(line)}")
            stderr.print(f"[dim]demo:[/] {escape(line)}", highlight=False)

        summary = api.demo(output, options=api.DemoOptions(threads=threads, workers=workers), say=say)
    for line in summary.lines():
        stdout.print(line, highlight=False, soft_wrap=True)
