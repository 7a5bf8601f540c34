"""Pulling zoo models: fetch pinned artifacts, verify, convert once, cache with a manifest."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from edgevision.errors import EdgevisionError
from edgevision.files import cache_dir, sha256_file, staging_dir, write_atomic
from edgevision.packages import fetch_artifact
from edgevision.zoo.registry import get_spec
from edgevision.zoo.spec import Artifact, ModelSpec

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"


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
        p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in sorted(folder.iterdir()) if p.is_file()
    }
    manifest = {
        "name": spec.name,
        "task": spec.task,
        "license": spec.license,
        "artifacts": [artifact_record(a) for a in spec.artifacts],
        "files": files,
    }
    write_atomic(folder / MANIFEST, json.dumps(manifest, indent=2).encode())


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
        raise EdgevisionError(f"{name} has no {fmt} file; it comes as {', '.join(spec.files) or 'nothing runnable'}.")
    return pull(name) / spec.files[fmt]
