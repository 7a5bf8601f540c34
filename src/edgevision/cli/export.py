"""``edgevision export MODEL --variant NAME -o OUT`` (or ``--from-bench results.json``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgevision import api
from edgevision.cli.console import json_stdout, stderr, stdout


def export(
    model: Annotated[
        str | None,
        typer.Argument(help="Zoo model name or a file edgevision produced (optional with --from-bench)."),
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Bundle folder, or an archive when it ends in .tar.gz.")
    ] = ...,
    variant: Annotated[
        str | None, typer.Option("--variant", help="Bench variant to bundle, e.g. openvino-int8, ort-fp32.")
    ] = None,
    from_bench: Annotated[
        Path | None,
        typer.Option("--from-bench", help="A bench results.json: bundle its recommended variant (or --variant)."),
    ] = None,
    calib: Annotated[str | None, typer.Option("--calib", help="Calibration images for an int8 variant.")] = None,
    max_drop: Annotated[
        float, typer.Option("--max-drop", min=0.0, max=1.0, help="Largest agreement drop of an int8 variant.")
    ] = api.DEFAULT_MAX_DROP,
) -> None:
    """Write a deploy bundle: the variant's files, its model card and metadata, and their hashes."""
    # stdout carries the one result line: what libraries print (NNCF's progress bars) goes to stderr
    with json_stdout(), stderr.status(f"exporting {model or from_bench}"):
        result = api.export(
            model, output=output, variant=variant, from_bench=from_bench, calib=calib, max_drop=max_drop
        )
    what = result.variant or f"{result.runtime} {result.precision}"
    stdout.print(
        f"{result.source_model or result.model}: {what} ({result.model}, {result.bytes / 1e6:.2f} MB) -> {result.output}",
        highlight=False,
    )
    needs = " and ".join(result.runtimes)
    stderr.print(f"run it anywhere edgevision and {needs} are installed: edgevision run {result.output} ...")
