"""``edgevision watch CONFIG``: the multi-camera service; ``--check`` validates its config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgevision import api
from edgevision.cli.console import stdout


def watch(
    config: Annotated[Path, typer.Argument(help="The YAML config: cameras, zones, lines, storage, web.")],
    check: Annotated[bool, typer.Option("--check", help="Validate the config, print a summary and exit.")] = False,
) -> None:
    """Watch several cameras: detection, tracking, zones and lines, events kept on disk, a web API (SIGHUP reloads)."""
    if check:
        checked = api.check_watch_config(config)
        stdout.print(f"{config}: valid", highlight=False, soft_wrap=True, markup=False)
        for line in checked.summary_lines():
            stdout.print(line, highlight=False, soft_wrap=True, markup=False)
        return
    api.watch(config)
