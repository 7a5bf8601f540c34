"""The model zoo: a registry of real pretrained models pinned to registry packages.

Each model family file in ``edgevision.models`` registers its entries with
``register_model``; nothing else lists them.

>>> from edgevision.zoo import list_models
>>> "nanodet-m" in list_models()
True
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import logging
from pathlib import Path

from edgevision.discovery import import_submodules
from edgevision.errors import EdgevisionError
from edgevision.files import cache_dir, sha256_file, staging_dir
from edgevision.zoo.sources import fetch_artifact
from edgevision.zoo.spec import Artifact, ModelSpec

logger = logging.getLogger(__name__)

_REGISTRY: dict[str, ModelSpec] = {}
MANIFEST = "manifest.json"


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add ``spec`` to the zoo under ``spec.name``."""
    _REGISTRY[spec.name] = spec
    return spec


def _discover() -> None:
    import_submodules("edgevision.models")


def list_models(pattern: str = "*") -> list[str]:
    """Names of zoo models matching a shell-style ``pattern``."""
    _discover()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_spec(name: str) -> ModelSpec:
    """The zoo entry called ``name``; an unknown name suggests the closest ones."""
    _discover()
    if name in _REGISTRY:
        return _REGISTRY[name]
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.4)
    hint = f"did you mean {' or '.join(close)}?" if close else f"known models: {', '.join(list_models())}."
    raise EdgevisionError(f"unknown model '{name}'; {hint} (see: edgevision zoo list)")


def model_dir(name: str) -> Path:
    return cache_dir("models") / name


def is_cached(name: str) -> bool:
    return (model_dir(name) / MANIFEST).exists()


def pull(name: str, *, force: bool = False) -> Path:
    """Fetch, verify and convert zoo model ``name``; return its cache folder.

    A second pull returns at once without the network. A failed pull leaves nothing behind.
    """
    spec = get_spec(name)
    final = model_dir(name)
    if is_cached(name) and not force:
        return final
    with staging_dir(final) as tmp:
        for artifact in spec.artifacts:
            logger.info("%s: fetching %s", name, artifact.filename)
            fetch_artifact(artifact, tmp)
        if spec.prepare is not None:
            logger.info("%s: converting", name)
            spec.prepare(tmp)
        _write_manifest(spec, tmp)
    return final


def _write_manifest(spec: ModelSpec, folder: Path) -> None:
    files = {
        p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(folder.iterdir())
        if p.is_file()
    }
    manifest = {
        "name": spec.name,
        "task": spec.task,
        "license": spec.license,
        "artifacts": [artifact_record(a) for a in spec.artifacts],
        "files": files,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))


def artifact_record(artifact: Artifact) -> dict:
    record = {
        "file": artifact.filename,
        "source": artifact.source,
        "sha256": artifact.sha256,
        "upstream": artifact.url,
    }
    if artifact.size is not None:
        record.update(offset=artifact.offset, size=artifact.size)
    return record


def model_file(name: str, fmt: str) -> Path:
    """Path of the pulled model's file in format ``fmt`` ("onnx", "tflite"), pulling first."""
    spec = get_spec(name)
    if fmt not in spec.files:
        raise EdgevisionError(
            f"{name} has no {fmt} file; it comes as {', '.join(spec.files) or 'nothing runnable'}."
        )
    return pull(name) / spec.files[fmt]


__all__ = [
    "Artifact",
    "ModelSpec",
    "register_model",
    "list_models",
    "get_spec",
    "pull",
    "is_cached",
    "model_dir",
    "model_file",
]
