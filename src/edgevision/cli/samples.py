"""``edgevision samples list|pull|path``."""

from __future__ import annotations

import typer

from edgevision import api
from edgevision.cli.console import stderr, stdout

app = typer.Typer(no_args_is_help=True, help="Real sample photos and the pedestrian video.")


@app.command("pull")
def pull_command() -> None:
    """Fetch every sample into the cache, verified by hash."""
    with stderr.status("pulling samples"):
        paths = api.pull_samples()
    for path in paths:
        stdout.print(str(path))


@app.command("list")
def list_command() -> None:
    """Sample names and where each comes from."""
    for name, source in api.sample_sources().items():
        stdout.print(f"{name:18} {source}", soft_wrap=True)


@app.command("path")
def path_command(name: str = typer.Argument(api.DEFAULT_VIDEO, help="Sample name.")) -> None:
    """Print the cached path of one sample (fetching it first if needed)."""
    stdout.print(str(api.sample_path(name)), soft_wrap=True)
