"""The ``edgevision`` command: one module per command, errors printed in one place.

Exit codes: 0 done, 2 a user error (one sentence), 128 + N when stopped by signal N before
the work was done (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP). SIGTERM and SIGHUP take Ctrl-C's
path: ``run`` finishes its outputs and ends like a finished run (exit 0); ``predict`` keeps
the frames already done, then exits 128 + N.
"""

from __future__ import annotations

import logging
import signal
import sys

import typer
from rich.markup import escape

from edgevision.api import stop_on_signals
from edgevision.cli import (
    bench,
    convert,
    dashboard,
    demo,
    devices,
    export,
    inspect,
    optimize,
    predict,
    quantize,
    run,
    samples,
    watch,
    zoo,
)
from edgevision.cli.console import stderr
from edgevision.errors import EdgevisionError, Interrupted

INTERRUPTED = 130  # typer's exit code for a KeyboardInterrupt, whatever the signal

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Make vision models fast on CPU-only edge devices, and measure what the speed cost.",
)
app.add_typer(zoo.app, name="zoo")
app.add_typer(samples.app, name="samples")
app.command("demo")(demo.demo)
app.command("predict")(predict.predict)
app.command("run")(run.run)
app.command("quantize")(quantize.quantize)
app.command("convert")(convert.convert)
app.command("optimize")(optimize.optimize)
app.command("bench")(bench.bench)
app.command("export")(export.export)
app.command("devices")(devices.devices)
app.command("inspect")(inspect.inspect)
app.command("watch")(watch.watch)
app.command("dashboard")(dashboard.dashboard)


class OneLineFormatter(logging.Formatter):
    """``warning: message`` on one line, for logs read by scripts or kept in files."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {' '.join(record.getMessage().split())}"


def _configure_logging() -> None:
    from rich.logging import RichHandler

    if stderr.is_terminal:
        handler: logging.Handler = RichHandler(console=stderr, show_time=False, show_path=False)
    else:  # piped or redirected: one line per record, never wrapped or padded
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(OneLineFormatter())
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[handler])
    for noisy in ("tensorflow", "tf2onnx", "absl", "h5py", "onnxslim", "onnx2tf", "nncf"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def main() -> None:
    """Entry point: run the CLI; user errors become one sentence and exit code 2."""
    _configure_logging()
    with stop_on_signals() as stops:
        try:
            app()
        except EdgevisionError as exc:
            stderr.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            sys.exit(2)
        except SystemExit as end:
            if end.code == INTERRUPTED and stops.last is not None:  # typer ends any Ctrl-C with 130
                _exit_interrupted(stops.last)
            raise
        except KeyboardInterrupt as exc:
            _exit_interrupted(exc if isinstance(exc, Interrupted) else Interrupted(signal.SIGINT))


def _exit_interrupted(stop: Interrupted) -> None:
    stderr.print(f"interrupted by {stop.name}", highlight=False)
    sys.exit(stop.exit_code)
