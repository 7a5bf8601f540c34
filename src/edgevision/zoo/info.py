"""What ``edgevision zoo info`` shows: provenance, files, parameters, inputs and outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Group
from rich.table import Table

from edgevision.types import TensorSpec
from edgevision.zoo import get_spec, pull


def onnx_summary(path: Path) -> tuple[int, list[TensorSpec], list[TensorSpec]]:
    """Parameter count, inputs and outputs of an ONNX file, read without a runtime."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(path), load_external_data=False)
    params = sum(int(np.prod(t.dims)) for t in model.graph.initializer if t.data_type != TensorProto.INT64)

    def spec(value) -> TensorSpec:
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim)
        return TensorSpec(value.name, dims, np.dtype(helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)).name)

    initializers = {t.name for t in model.graph.initializer}
    inputs = [spec(v) for v in model.graph.input if v.name not in initializers]
    return params, inputs, [spec(v) for v in model.graph.output]


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _tensor_rows(table: Table, kind: str, specs: list[TensorSpec]) -> None:
    for s in specs:
        table.add_row(kind, s.name, "x".join("?" if d is None else str(d) for d in s.shape), s.dtype)


def describe(name: str) -> Group:
    """A rich renderable describing zoo model ``name`` (pulled first if needed)."""
    spec = get_spec(name)
    folder = pull(name)
    facts = Table.grid(padding=(0, 2))
    for key, value in (
        ("model", spec.name), ("task", spec.task), ("summary", spec.summary),
        ("input size", "{}x{}".format(*spec.input_size)), ("pre-processing", spec.preprocessing),
        ("licence", spec.license), ("homepage", spec.homepage), ("cache", str(folder)),
    ):
        facts.add_row(f"[bold]{key}[/]", value)
    files = Table("file", "size", "parameters", title="files")
    tensors = Table("", "name", "shape", "dtype", title="model inputs and outputs")
    for fmt, filename in spec.files.items():
        path = folder / filename
        params = "-"
        if fmt == "onnx":
            count, inputs, outputs = onnx_summary(path)
            params = f"{count / 1e6:.3f} M"
            _tensor_rows(tensors, "input", inputs)
            _tensor_rows(tensors, "output", outputs)
        files.add_row(filename, _size(path.stat().st_size), params)
    sources = Table("file", "source", "sha256", "upstream", title="provenance")
    for a in spec.artifacts:
        sources.add_row(a.filename, a.source, a.sha256[:16] + "…", a.url)
    return Group(facts, files, tensors, sources)
