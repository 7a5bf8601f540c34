"""``edgevision zoo list|pull|info``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from edgevision import zoo
from edgevision.cli.console import stderr, stdout
from edgevision.zoo.info import describe
from edgevision.zoo.pytorch import is_pytorch_family

app = typer.Typer(no_args_is_help=True, help="List, pull and inspect the pretrained models.")


@app.command("list")
def list_command(pattern: Annotated[str, typer.Argument(help="Shell-style name filter.")] = "*") -> None:
    """List zoo models with task, input size, licence and whether each is cached."""
    table = Table("name", "task", "input", "licence", "cached")
    for column in table.columns:
        column.no_wrap = True
    table.add_column("summary", overflow="ellipsis", no_wrap=True, max_width=60)
    for name in zoo.list_models(pattern):
        spec = zoo.get_spec(name)
        w, h = spec.input_size
        table.add_row(name, spec.task, f"{w}x{h}", spec.license.split(":")[0], _cached(spec), spec.summary)
    stdout.print(table)


def _cached(spec) -> str:
    if is_pytorch_family(spec):
        return "user weights"
    return "[green]yes[/]" if zoo.is_cached(spec.name) else "no"


@app.command("pull")
def pull_command(
    names: Annotated[list[str], typer.Argument(help="Zoo model names, or 'all'.")],
    force: Annotated[bool, typer.Option(help="Fetch and convert again even if cached.")] = False,
) -> None:
    """Fetch, verify and convert models into the cache (instant and offline once cached)."""
    for name in zoo.list_models() if names == ["all"] else names:
        zoo.get_spec(name)
        with stderr.status(f"pulling {name}"):
            folder = zoo.pull(name, force=force)
        stdout.print(f"{name}: {folder}")


@app.command("info")
def info_command(name: Annotated[str, typer.Argument(help="Zoo model name.")]) -> None:
    """Parameters, inputs and outputs, file sizes, licence and provenance of a model."""
    stdout.print(describe(name))
