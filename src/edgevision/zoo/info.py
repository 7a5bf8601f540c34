"""What the zoo knows of a model, as data: provenance, files, parameters, FLOPs, inputs and outputs.

>>> from edgevision.zoo.info import model_record
>>> model_record("nanodet-m")["input_size"]
[416, 416]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgevision.files import cache_dir
from edgevision.types import TensorSpec
from edgevision.zoo.pull import is_cached, model_dir, pulled_dir
from edgevision.zoo.pytorch import build_module, is_pytorch_family
from edgevision.zoo.registry import get_spec
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


def model_record(name: str) -> dict:
    """What ``zoo list`` says of one model (``model_info`` starts from it too).

    ``cached``: the pulled files are in the cache; for PyTorch families (``weights: user``),
    an export of the network is.
    """
    spec = get_spec(name)
    w, h = spec.input_size
    pytorch = is_pytorch_family(spec)
    return {
        "name": spec.name,
        "task": spec.task,
        "family": spec.family,
        "input_size": [w, h],
        "licence": spec.license,
        "weights": "user" if pytorch else "registry package",
        "cached": _has_exports(spec.name) if pytorch else is_cached(spec.name),
        "formats": sorted(spec.files),
        "summary": spec.summary,
        "preprocessing": spec.preprocessing,
        "homepage": spec.homepage,
        "needs_extra": spec.needs_extra,
    }


def model_info(name: str) -> dict:
    """``model_record`` plus files, parameters, tensors and provenance (pulled models are pulled
    first), or parameters, compute and the checkpoint to download (PyTorch families)."""
    spec = get_spec(name)
    extra = _pytorch_info(spec) if is_pytorch_family(spec) else _pulled_info(spec)
    return model_record(name) | extra


def _has_exports(name: str) -> bool:
    folder = model_dir(name)
    return folder.is_dir() and any(p.is_dir() for p in folder.iterdir())


def _tensors(specs: list[TensorSpec]) -> list[dict]:
    return [s.to_dict() for s in specs]


def _pulled_info(spec: ModelSpec) -> dict:
    folder = pulled_dir(spec.name)
    info: dict = {"cache": str(folder), "files": [], "params": None, "inputs": [], "outputs": []}
    for fmt, filename in spec.files.items():
        path = folder / filename
        entry = {"file": filename, "format": fmt, "size_bytes": path.stat().st_size, "params": None}
        if fmt == "onnx":
            entry["params"], inputs, outputs = onnx_summary(path)
            info.update(params=entry["params"], inputs=_tensors(inputs), outputs=_tensors(outputs))
        info["files"].append(entry)
    info["provenance"] = [
        {
            "file": a.filename,
            "source": a.source,
            "registry": a.registry,
            "package": a.package,
            "version": a.version,
            "member": a.member,
            "sha256": a.sha256,
            "upstream": a.url,
        }
        for a in spec.artifacts
    ]
    return info


def _pytorch_info(spec: ModelSpec) -> dict:
    from edgevision.models.flops import count_macs, count_params

    module = build_module(spec, random_weights=True)
    params, macs = count_params(module), count_macs(module, spec.flops_input)
    w = spec.weights
    checkpoint = {"file": w.filename, "layout": w.layout, "url": w.url, "sha256": w.sha256 or None} if w else None
    return {
        "params": params,
        "fp32_bytes": params * 4,
        "macs": macs,
        "flops": 2 * macs,
        "flops_input": list(spec.flops_input),
        "checkpoint": checkpoint,
        "cached_exports": sorted(p.name for p in cache_dir("models", spec.name).iterdir() if p.is_dir()),
    }
