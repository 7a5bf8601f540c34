"""``edgevision watch CONFIG``: the multi-camera service; ``--check`` validates its config; ``--hash-password``."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from edgevision import api
from edgevision.cli.console import stdout
from edgevision.errors import EdgevisionError


def watch(
    config: Annotated[
        Path | None, typer.Argument(help="The YAML config: cameras, zones, lines, storage, web.", show_default=False)
    ] = None,
    check: Annotated[bool, typer.Option("--check", help="Validate the config, print a summary and exit.")] = False,
    hash_password: Annotated[
        bool,
        typer.Option(
            "--hash-password",
            help="Read a password (prompted, or one line from stdin) and print its hash for web.auth.password_hash.",
        ),
    ] = False,
) -> None:
    """Watch several cameras: detection, tracking, zones and lines, events kept on disk, a web page (SIGHUP reloads)."""
    if hash_password:
        _print(api.hash_watch_password(_read_password()))
        return
    if config is None:
        raise EdgevisionError("give the watch config: edgevision watch CONFIG.yaml (or --hash-password).")
    if check:
        checked = api.check_watch_config(config)
        _print(f"{config}: valid")
        for line in checked.summary_lines():
            _print(line)
        return
    api.watch(config)
    _exit_now()


def _exit_now() -> None:
    """End the process at once, the service having stopped and closed everything it opened.

    SIGTERM must end ``watch`` within 5 s (systemd then kills it). The interpreter's own
    teardown, freeing the models' and runtimes' objects one by one, took 0.9 s of CPU after
    the service had stopped, and twice that on a busy board; nothing of ours is left to run.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _read_password() -> str:
    if sys.stdin.isatty():
        return typer.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    return sys.stdin.readline().rstrip("\r\n")


def _print(text: str) -> None:
    stdout.print(text, highlight=False, soft_wrap=True, markup=False)
