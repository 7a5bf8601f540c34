"""``edgevision bench MODEL``: every variant side by side, with a report."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from edgevision import api
from edgevision.cli.card import card_options
from edgevision.cli.console import (
    RandomWeightsOption,
    WeightsOption,
    json_stdout,
    print_json,
    stderr,
    stdout,
)


@card_options
def bench(
    model: Annotated[str, typer.Argument(help="Zoo model name or ONNX file.")],
    variants: Annotated[
        str | None,
        typer.Option("--variants", "-v", help="Comma-separated, e.g. ort-fp32,openvino-int8 (default: all installed)."),
    ] = None,
    threads: Annotated[str, typer.Option("--threads", "-t", help="Thread counts to time, e.g. 1,2.")] = "2",
    data: Annotated[
        list[str] | None,
        typer.Option(
            "--data",
            help="Images, folders or globs of images, or videos scored for accuracy; repeat for several "
            "(--data a.jpg --data frames/); a file named twice is read once.",
        ),
    ] = None,
    annotations: Annotated[
        Path | None, typer.Option("--annotations", help="COCO JSON of the --data images: real AP against ground truth.")
    ] = None,
    calib: Annotated[
        str | None, typer.Option("--calib", help="int8 calibration images or video (default: sample video).")
    ] = None,
    max_drop: Annotated[
        float, typer.Option("--max-drop", min=0.0, max=1.0, help="Largest agreement drop of the recommended variant.")
    ] = api.DEFAULT_MAX_DROP,
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Timing rounds, alternating between variants.")] = 5,
    seconds: Annotated[float, typer.Option("--seconds", min=0.01, help="Seconds each variant runs per round.")] = 1.0,
    count: Annotated[int, typer.Option("--count", min=1, help="Images scored for accuracy.")] = 16,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Report folder (default runs/bench/MODEL).")
    ] = None,
    peak: Annotated[
        bool,
        typer.Option(
            "--peak/--no-peak", help="Measure the GEMM peaks for the '% of peak' column (about 10 s per thread count)."
        ),
    ] = True,
    weights: WeightsOption = None,
    random_weights: RandomWeightsOption = False,
    json_output: Annotated[
        bool,
        typer.Option(
            "--json", help="Print the results record (as in results.json) to standard output; tables to stderr."
        ),
    ] = False,
    card=None,
) -> None:
    """Build (or reuse) variants across runtimes and precisions, time each in its own process, report."""
    timing = api.TimingOptions(rounds=rounds, round_seconds=seconds, pipeline_seconds=min(0.3, seconds))
    options = api.BenchOptions(
        variants=variants,
        threads=threads,
        data=tuple(data) if data else None,
        annotations=annotations,
        calib=calib,
        max_drop=max_drop,
        data_count=count,
        timing=timing,
        weights=weights,
        random_weights=random_weights,
        card=card,
        measure_peak=peak,
    )
    columns = (SpinnerColumn(), TextColumn("[bold]bench[/] {task.description}"), TimeElapsedColumn())
    with (
        json_stdout() if json_output else nullcontext(),
        Progress(*columns, console=stderr, transient=True) as progress,
    ):
        task = progress.add_task(model)
        result = api.bench(
            model, output=output, options=options, progress=lambda line: progress.update(task, description=escape(line))
        )
    if json_output:
        show(result, console=stderr)
        print_json(Path(result.paths["json"]).read_text())
    else:
        show(result)


def show(result, console=stdout) -> None:
    """The results table and the summary lines on ``console``, and where the reports are on stderr."""
    headers = [c.replace(" ms", "\nms").replace(" MB", "\nMB").replace("% of ", "%\n") for c in api.BENCH_COLUMNS]
    table = Table(
        *headers,
        title=f"edgevision bench: {result.model} (load, first-inference and more in report.md)",
        title_justify="left",
    )
    table.columns[0].no_wrap = True
    for column in table.columns[1:]:
        column.justify = "right"
    for row in api.bench_rows(result):
        table.add_row(*row, style="bold green" if "★" in row[0] else None)
    console.print(table)
    for line in api.bench_summary(result):
        console.print(escape(line), highlight=False, soft_wrap=True)
    stderr.print(f"reports: {result.paths['md']}, {result.paths['html']}, {result.paths['json']}")
