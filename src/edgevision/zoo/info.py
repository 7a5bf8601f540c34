"""What ``edgevision zoo info`` shows: provenance, files, parameters, FLOPs, inputs and outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Group
from rich.table import Table

from edgevision.files import cache_dir
from edgevision.types import TensorSpec
from edgevision.zoo import get_spec, pull
from edgevision.zoo.pytorch import build_module, is_pytorch_family
from edgevision.zoo.spec import ModelSpec


def onnx_summary(path: Path) -> tuple[int, list[TensorSpec], list[TensorSpec]]:
    """Parameter count, inputs and outputs of an ONNX file, read without a runtime."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(path), load_external_data=False)
    params = sum(int(np.prod(t.dims)) for t in model.graph.initializer if t.data_type != TensorProto.INT64)

    def spec(value) -> TensorSpec:
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim)
        dtype = helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        return TensorSpec(value.name, dims, np.dtype(dtype).name)

    initializers = {t.name for t in model.graph.initializer}
    inputs = [spec(v) for v in model.graph.input if v.name not in initializers]
    return params, inputs, [spec(v) for v in model.graph.output]


def size_text(n: float) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _facts(rows: list[tuple[str, str]], title: str | None = None) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    if title:
        table.title, table.title_justify = title, "left"
    for key, value in rows:
        table.add_row(f"[bold]{key}[/]", value)
    return table


def _tensor_table(inputs: list[TensorSpec], outputs: list[TensorSpec]) -> Table:
    table = Table("", "name", "shape", "dtype", title="inputs and outputs", title_justify="left")
    for kind, specs in (("input", inputs), ("output", outputs)):
        for s in specs:
            table.add_row(kind, s.name, "x".join("?" if d is None else str(d) for d in s.shape), s.dtype)
    return table


def _general(spec: ModelSpec) -> list[tuple[str, str]]:
    return [
        ("model", spec.name), ("task", spec.task), ("summary", spec.summary),
        ("input size", "{}x{}".format(*spec.input_size)), ("pre-processing", spec.preprocessing),
        ("licence", spec.license), ("homepage", spec.homepage),
    ]  # fmt: skip


def _pulled_parts(spec: ModelSpec) -> list:
    folder = pull(spec.name)
    files = Table("file", "size", "parameters", title="files", title_justify="left")
    tensors = None
    for fmt, filename in spec.files.items():
        path = folder / filename
        params = "-"
        if fmt == "onnx":
            count, inputs, outputs = onnx_summary(path)
            params = f"{count / 1e6:.3f} M"
            tensors = _tensor_table(inputs, outputs)
        files.add_row(filename, size_text(path.stat().st_size), params)
    provenance = [
        (a.filename, f"{a.source}\n  sha256 {a.sha256}\n  upstream {a.url}") for a in spec.artifacts
    ]
    parts = [_facts([("cache", str(folder))]), files]
    return parts + ([tensors] if tensors else []) + [_facts(provenance, "provenance")]


def _pytorch_parts(spec: ModelSpec) -> list:
    from edgevision.models.flops import count_macs, count_params

    module = build_module(spec, random_weights=True)
    params, macs = count_params(module), count_macs(module, spec.flops_input)
    shape = "x".join(map(str, spec.flops_input))
    exports = sorted(p.name for p in cache_dir("models", spec.name).iterdir() if p.is_dir())
    w = spec.weights
    rows = [
        ("parameters", f"{params / 1e6:.2f} M ({size_text(params * 4)} in fp32)"),
        ("compute", f"{macs / 1e9:.2f} GMACs = {2 * macs / 1e9:.2f} GFLOPs at {shape}"),
        ("weights", "not in any registry package: download them, then pass --weights PATH "
                    "(or --random-weights for size and speed studies)"),
        ("checkpoint", f"{w.filename} ({w.layout})" if w else "-"),
        ("download", w.url if w else "-"),
        ("sha256", (w.sha256 or "not published") if w else "-"),
        ("cached exports", ", ".join(exports) or "none yet"),
    ]  # fmt: skip
    return [_facts(rows)]


def describe(name: str) -> Group:
    """A rich renderable describing zoo model ``name`` (pulled first when it comes from a package)."""
    spec = get_spec(name)
    parts = _pytorch_parts(spec) if is_pytorch_family(spec) else _pulled_parts(spec)
    return Group(_facts(_general(spec)), *parts)
