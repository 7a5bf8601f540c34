"""The metadata file written beside every model edgevision produces.

``model.onnx`` gets ``model.onnx.edgevision.json`` holding where it came from (zoo model or
file and its hash), how it was made (backend, precision, calibration, excluded layers),
what it measured (parity, agreement) and the tool versions. ``predict``, ``bench`` and
``run`` read it to decode a produced file as its source model, with no extra flags.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

from edgevision.files import write_atomic

SUFFIX = ".edgevision.json"
_TOOLS = (
    "edgevision",
    "onnx",
    "onnxruntime",
    "openvino",
    "nncf",
    "ai-edge-litert",
    "tensorflow-cpu",
    "tf2onnx",
    "onnx2tf",
    "onnxslim",
    "torch",
)


@dataclass
class VariantMeta:
    """How a produced model was made and what it measured."""

    source_model: str  # zoo name, or path of the user's file
    source_sha256: str
    runtime: str  # backend that runs the file: onnxruntime, openvino, litert, torch
    precision: str  # fp32, fp16, int8-dynamic, int8
    step: str = "convert"  # convert, optimize, quantize
    calibration: dict = field(default_factory=dict)  # images, count, method, per_channel ...
    excluded: list[str] = field(default_factory=list)  # layers kept in float
    parity: dict = field(default_factory=dict)  # per output max_abs / cosine / sqnr
    agreement: dict = field(default_factory=dict)  # task metric vs fp32
    notes: list[str] = field(default_factory=list)
    random_weights: bool = False
    tools: dict = field(default_factory=dict)


def tool_versions() -> dict[str, str]:
    """Versions of the installed tools that shape a produced model, plus the machine."""
    found = {"python": platform.python_version(), "machine": platform.machine()}
    for name in _TOOLS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def meta_path(model: Path) -> Path:
    return model.with_name(model.name + SUFFIX)


def write_meta(model: Path, meta: VariantMeta) -> Path:
    """Write ``meta`` beside ``model`` (tool versions filled in when empty)."""
    if not meta.tools:
        meta.tools = tool_versions()
    path = meta_path(model)
    write_atomic(path, json.dumps(asdict(meta), indent=2).encode())
    return path


def read_meta(model: Path) -> VariantMeta | None:
    """The metadata beside ``model``, or None for a file edgevision did not produce."""
    path = meta_path(Path(model))
    if not path.exists():
        return None
    fields = json.loads(path.read_text())
    known = set(VariantMeta.__dataclass_fields__)
    return VariantMeta(**{k: v for k, v in fields.items() if k in known})
