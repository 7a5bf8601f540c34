"""``edgevision inspect MODEL``: what is inside a model file, its graph, and what changed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Group
from rich.markup import escape
from rich.table import Table

from edgevision import api
from edgevision.cli.console import (
    JsonOption,
    WeightsOption,
    json_stdout,
    print_json,
    stderr,
    stdout,
)


def inspect(
    model: Annotated[str, typer.Argument(help="Zoo model name or model file (.onnx, .xml, .tflite).")],
    graph: Annotated[Path | None, typer.Option("--graph", help="Draw the graph to this .html or .svg file.")] = None,
    diff: Annotated[
        str | None, typer.Option("--diff", help="Another model: show what changed from MODEL to it.")
    ] = None,
    weights: WeightsOption = None,
    input_size: Annotated[
        str | None,
        typer.Option(
            "--input-size", help="WIDTHxHEIGHT at which to count MACs when the input size is dynamic (default 640x640)."
        ),
    ] = None,
    bodies: Annotated[
        bool, typer.Option("--subgraphs/--no-subgraphs", help="With --graph, draw the bodies of Loop/If/Scan nodes.")
    ] = True,
    json_output: JsonOption = False,
) -> None:
    """Inputs and outputs, parameters, MACs, op types, weight precision and largest layers."""
    if graph is not None:
        api.check_graph_output(graph)
    draw = {"graph": graph, "weights": weights, "bodies": bodies, "input_size": input_size}
    if json_output:
        with json_stdout():
            found = (
                api.diff_models(model, diff)
                if diff is not None
                else api.inspect(model, weights=weights, input_size=input_size)
            )
            _draw(model, **draw)
        print_json(found.to_dict())
        return
    if diff is not None:
        stdout.print(render_diff(api.diff_models(model, diff)))
    else:
        stdout.print(render_report(api.inspect(model, weights=weights, input_size=input_size)))
    _draw(model, **draw)


def _draw(model: str, *, graph: Path | None, weights: Path | None, bodies: bool, input_size: str | None) -> None:
    if graph is not None:
        with stderr.status(f"drawing {model}"):
            path = api.write_graph(model, graph, weights=weights, bodies=bodies, input_size=input_size)
        stderr.print(f"graph: {path}")


def _precision_table(precision: dict, title: str = "weight precision") -> Table:
    table = Table("precision", "tensors", "elements", "MB", title=title, title_justify="left")
    for kind, v in sorted(precision.items(), key=lambda kv: -kv[1]["elements"]):
        table.add_row(kind, str(v["tensors"]), f"{v['elements']:,}", f"{v['bytes'] / 1e6:.2f}")
    return table


def render_report(report) -> Group:
    """Rich tables for one ``ModelReport``."""
    facts = Table.grid(padding=(0, 2))
    facts.add_row("[bold]file", escape(str(report.path)))
    facts.add_row("[bold]format", report.format)
    facts.add_row("[bold]size", f"{report.size_bytes / 1e6:.2f} MB")
    facts.add_row("[bold]parameters", f"{report.params:,}")
    facts.add_row("[bold]MACs", _macs_text(report))
    tensors = Table("", "name", "shape", "dtype", title="inputs and outputs", title_justify="left")
    for kind, specs in (("input", report.inputs), ("output", report.outputs)):
        for s in specs:
            tensors.add_row(kind, escape(s.name), "x".join("?" if d is None else str(d) for d in s.shape), s.dtype)
    ops = Table("op type", "count", title=f"ops ({sum(report.ops.values())} nodes)", title_justify="left")
    for op, n in report.ops.most_common():
        ops.add_row(op, str(n))
    layers = Table("layer", "op", "weights", "MMACs", "in body", title="largest layers", title_justify="left")
    for layer in report.layers:
        layers.add_row(
            escape(layer.name),
            layer.op,
            f"{layer.params:,}",
            f"{layer.macs / 1e6:.1f}" if layer.macs else "-",
            escape(layer.graph) or "-",
        )
    return Group(facts, tensors, ops, *_bodies_table(report), _precision_table(report.precision), layers)


def _macs_text(report) -> str:
    if report.macs is None:
        return "not counted for this format"
    text = f"{report.macs / 1e9:.3f} G per inference"
    at = report.counted_at
    if at is not None and at.assumed:
        text += f" at {escape(at.text())}: dynamic in the file" + ("" if at.size_from else ", set with --input-size")
    if report.subgraphs:
        text += " (Loop/If/Scan bodies counted once)"
    return text


def _bodies_table(report) -> list[Table]:
    if not report.subgraphs:
        return []
    table = Table("body", "ops", title="Loop/If/Scan bodies", title_justify="left")
    for path, ops in report.subgraphs.items():
        table.add_row(escape(path), ", ".join(f"{op} {n}" for op, n in ops.most_common()))
    return [table]


def render_diff(diff) -> Group:
    """Rich tables for one ``ModelDiff``."""
    head = Table.grid(padding=(0, 2))
    head.add_row("[bold]from", escape(str(diff.a.path)), f"{diff.a.size_bytes / 1e6:.2f} MB")
    head.add_row("[bold]to", escape(str(diff.b.path)), f"{diff.b.size_bytes / 1e6:.2f} MB")
    head.add_row("[bold]size ratio", f"{diff.size_ratio:.3f}x", "")
    head.add_row(
        "[bold]nodes",
        f"{sum(diff.a.ops.values())} -> {sum(diff.b.ops.values())}",
        f"{len(diff.added)} added, {len(diff.removed)} removed (by name)",
    )
    ops = Table("op type", "from", "to", "change", title="op histogram", title_justify="left")
    for op, a, b in diff.ops:
        ops.add_row(op, str(a), str(b), f"{b - a:+d}" if a != b else "", style="bold" if a != b else "dim")
    precision = Table("precision", "from (elements)", "to (elements)", title="weight precision", title_justify="left")
    for kind, a, b in diff.precision:
        precision.add_row(kind, f"{a:,}", f"{b:,}", style="bold" if a != b else "dim")
    names = Table("", "nodes (first 12)", title="nodes added / removed", title_justify="left")
    names.add_row("added", escape(", ".join(diff.added[:12]) + (" …" if len(diff.added) > 12 else "")) or "-")
    names.add_row("removed", escape(", ".join(diff.removed[:12]) + (" …" if len(diff.removed) > 12 else "")) or "-")
    return Group(head, ops, precision, names)
