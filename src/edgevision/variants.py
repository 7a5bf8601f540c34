"""The metadata file written beside every model edgevision produces.

``model.onnx`` gets ``model.onnx.edgevision.json`` holding where it came from (zoo model or
file and its hash), how it was made (backend, precision, calibration, excluded layers),
what it measured (parity, agreement), the tool versions, and the size and sha256 of the
model's own files. ``predict``, ``bench`` and ``run`` read it to decode a produced file as
its source model, with no extra flags; caches of produced files (bench variants, PyTorch
exports) reuse a file only while it still matches its recorded hashes.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

from edgevision.errors import EdgevisionError
from edgevision.files import damaged_files, file_record, write_atomic
from edgevision.modelfiles import embed_metadata, model_files

SUFFIX = ".edgevision.json"
CARD_KEY = "edgevision.card"  # the metadata key of the model card inside ONNX and OpenVINO files
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
    "ncnn",
    "pnnx",
)


@dataclass
class VariantMeta:
    """How a produced model was made and what it measured."""

    source_model: str  # zoo name, or path of the user's file
    source_sha256: str
    runtime: str  # backend that runs the file: onnxruntime, openvino, litert, torch, ncnn
    precision: str  # fp32, fp16, int8-dynamic, int8
    step: str = "convert"  # convert, optimize, quantize
    calibration: dict = field(default_factory=dict)  # images, count, method, per_channel ...
    excluded: list[str] = field(default_factory=list)  # layers kept in float
    parity: dict = field(default_factory=dict)  # per output max_abs / cosine / sqnr
    agreement: dict = field(default_factory=dict)  # task metric vs fp32
    notes: list[str] = field(default_factory=list)
    random_weights: bool = False
    card: dict = field(default_factory=dict)  # the model card (how to feed and decode it), also inside the file
    tools: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)  # the model's own files: {name: {"bytes", "sha256"}}


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
    """Write ``meta`` beside ``model`` (tool versions and the records of its files filled in)."""
    if not meta.tools:
        meta.tools = tool_versions()
    if meta.card:
        embed_metadata(model, CARD_KEY, json.dumps(meta.card, separators=(",", ":")))
    meta.files = {p.name: file_record(p) for p in model_files(model)}
    path = meta_path(model)
    write_atomic(path, json.dumps(asdict(meta), indent=2).encode())
    return path


def read_meta(model: Path) -> VariantMeta | None:
    """The metadata beside ``model``, or None for a file edgevision did not produce."""
    path = meta_path(Path(model))
    if not path.exists():
        return None
    try:
        fields = json.loads(path.read_text())
    except (OSError, ValueError):
        fields = None
    if not isinstance(fields, dict):
        raise EdgevisionError(f"the metadata file {path} is unreadable; delete it, or make {model} again.")
    known = set(VariantMeta.__dataclass_fields__)
    return VariantMeta(**{k: v for k, v in fields.items() if k in known})


def reuse_problem(model: Path) -> str | None:
    """Why the cached produced file ``model`` cannot be reused as it is, or None when it can.

    It must have its metadata file, with the records of its files, and match them (checked
    cheaply: see ``edgevision.files.damaged_files``).
    """
    model = Path(model)
    try:
        meta = read_meta(model) if model.is_file() else None
    except EdgevisionError:
        return "has an unreadable metadata file"
    if meta is None:
        return "is missing or has no metadata file"
    if not meta.files:
        return "has no recorded hash (made by an older edgevision)"
    problems = damaged_files(model.parent, meta.files)
    return "; ".join(f"{name} {problem}" for name, problem in problems.items()) or None
