"""``edgevision zoo list|pull|info``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from edgevision import zoo
from edgevision.cli.console import JsonOption, json_stdout, print_json, stderr, stdout
from edgevision.zoo.info import describe
from edgevision.zoo.pytorch import is_pytorch_family

app = typer.Typer(no_args_is_help=True, help="List, pull and inspect the pretrained models.")


@app.command("list")
def list_command(
    pattern: Annotated[str, typer.Argument(help="Shell-style name filter.")] = "*",
    json_output: JsonOption = False,
) -> None:
    """List zoo models with task, input size, licence and whether each is cached."""
    if json_output:
        with json_stdout():
            records = [model_record(zoo.get_spec(name)) for name in zoo.list_models(pattern)]
        print_json(records)
        return
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


def model_record(spec) -> dict:
    """What ``zoo list --json`` says of one model (``zoo info --json`` starts from it too).

    ``cached``: the pulled files are in the cache; for PyTorch families (``weights: user``),
    an export of the network is.
    """
    w, h = spec.input_size
    pytorch = is_pytorch_family(spec)
    return {"name": spec.name, "task": spec.task, "family": spec.family, "input_size": [w, h],
            "licence": spec.license, "weights": "user" if pytorch else "registry package",
            "cached": _has_exports(spec.name) if pytorch else zoo.is_cached(spec.name), "formats": sorted(spec.files),
            "summary": spec.summary, "preprocessing": spec.preprocessing, "homepage": spec.homepage,
            "needs_extra": spec.needs_extra}  # fmt: skip


def _has_exports(name: str) -> bool:
    folder = zoo.model_dir(name)
    return folder.is_dir() and any(p.is_dir() for p in folder.iterdir())


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
def info_command(name: Annotated[str, typer.Argument(help="Zoo model name.")], json_output: JsonOption = False) -> None:
    """Parameters, inputs and outputs, file sizes, licence and provenance of a model."""
    if json_output:
        spec = zoo.get_spec(name)
        with json_stdout():
            record = model_record(spec) | (_pytorch_info(spec) if is_pytorch_family(spec) else _pulled_info(spec))
        print_json(record)
        return
    stdout.print(describe(name))


def _tensors(specs) -> list[dict]:
    return [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in specs]


def _pulled_info(spec) -> dict:
    """Cache folder, files with sizes, parameters and tensors of the ONNX file, provenance."""
    from edgevision.zoo.info import onnx_summary

    with stderr.status(f"pulling {spec.name}"):
        folder = zoo.pull(spec.name)
    info: dict = {"cache": str(folder), "files": [], "params": None, "inputs": [], "outputs": []}
    for fmt, filename in spec.files.items():
        path = folder / filename
        entry = {"file": filename, "format": fmt, "size_bytes": path.stat().st_size, "params": None}
        if fmt == "onnx":
            entry["params"], inputs, outputs = onnx_summary(path)
            info.update(params=entry["params"], inputs=_tensors(inputs), outputs=_tensors(outputs))
        info["files"].append(entry)
    info["provenance"] = [{"file": a.filename, "source": a.source, "registry": a.registry, "package": a.package,
                           "version": a.version, "member": a.member, "sha256": a.sha256, "upstream": a.url}
                          for a in spec.artifacts]  # fmt: skip
    return info


def _pytorch_info(spec) -> dict:
    """Parameters and compute of the PyTorch network, the checkpoint to download, cached exports."""
    from edgevision.models.flops import count_macs, count_params
    from edgevision.zoo.cache import cache_dir
    from edgevision.zoo.pytorch import build_module

    module = build_module(spec, random_weights=True)
    params, macs = count_params(module), count_macs(module, spec.flops_input)
    w = spec.weights
    return {"params": params, "fp32_bytes": params * 4, "macs": macs, "flops": 2 * macs,
            "flops_input": list(spec.flops_input),
            "checkpoint": {"file": w.filename, "layout": w.layout, "url": w.url, "sha256": w.sha256 or None} if w else None,
            "cached_exports": sorted(p.name for p in cache_dir("models", spec.name).iterdir() if p.is_dir())}  # fmt: skip
