"""Deploy bundles: one chosen model variant with everything needed to run it elsewhere.

A bundle is a folder (or the same folder as a ``.tar.gz``) holding the variant's own files
(``.onnx``, ``.xml`` + ``.bin``, ``.tflite``, ``.param`` + ``.bin``), its metadata file
(``<model>.edgevision.json``: source and hash, precision, agreement with fp32, tool
versions, the model card), and ``bundle.json``: which file to load on which runtime, how it
decodes, what it measured on the machine that built it, and the sha256 of every other file.

>>> from edgevision.bundles import open_bundle
>>> model_file = open_bundle(Path("nd.tar.gz"))   # doctest: +SKIP
>>> model_file.name                               # doctest: +SKIP
'openvino-int8.xml'

Opening checks every hash, so a damaged or edited bundle is refused in one sentence; an
archive is unpacked once into the cache (``<cache>/bundles/<archive sha256>``) and checked
again each time it is opened. Nothing but the runtime named in ``bundle.json`` is needed to
run it: decoding uses the zoo model's decoder code (part of edgevision) or the model card.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgevision.errors import EdgevisionError
from edgevision.files import atomic_path, cache_dir, file_record, sha256_file, staging_dir
from edgevision.variants import meta_path, model_files

MANIFEST = "bundle.json"
FORMAT = 1
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")


@dataclass
class BundleManifest:
    """What ``bundle.json`` holds."""

    model: str  # the file to load, relative to the bundle
    runtime: str  # onnxruntime, openvino, litert, ncnn
    precision: str
    variant: str | None = None  # bench variant name, e.g. openvino-int8
    source_model: str | None = None  # zoo name, or the name of the user's file
    source_sha256: str | None = None
    decoding: str = ""  # how outputs become detections or poses, in words
    agreement: dict = field(default_factory=dict)  # with fp32, as measured when it was made
    built_on: dict = field(default_factory=dict)  # the building machine and what it measured there
    tools: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)  # {name: {"bytes", "sha256"}} of every other file
    companions: dict = field(default_factory=dict)  # {file: runtime} the decoding runs beside the model
    inference: str | None = None  # the runtime's precision option to run it with (bf16, fp16), None: its own rule
    check: dict = field(default_factory=dict)  # photos and fp32 predictions to measure agreement again (checkset.py)
    format: int = FORMAT
    made: str = ""

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def is_bundle(path: Path) -> bool:
    """True for a bundle folder (it has ``bundle.json``) or a bundle archive (by its suffix)."""
    path = Path(path)
    if path.is_dir():
        return (path / MANIFEST).is_file()
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def bundle_files(model: Path) -> list[Path]:
    """The files a bundle of ``model`` carries: the model's own files and its metadata file."""
    files = model_files(Path(model))
    meta = meta_path(Path(model))
    return files + ([meta] if meta.is_file() else [])


def write_bundle(
    model: Path,
    manifest: BundleManifest,
    output: Path,
    companions: dict[Path, str] | None = None,
    extra: list[Path] | None = None,
) -> Path:
    """Write a bundle of ``model`` to ``output`` (a folder, or an archive when it ends in ``.tar.gz``),
    with ``companions`` ({file: runtime}: files its decoding runs) and ``extra`` files beside it.

    The output appears whole or not at all: it is assembled in a hidden folder beside it
    and renamed into place; an existing output is replaced only then.
    """
    output = Path(output)
    companions = companions or {}
    files = bundle_files(model) + list(companions) + list(extra or [])
    manifest.companions = {Path(f).name: runtime for f, runtime in companions.items()}
    manifest.model = Path(model).name
    manifest.files = {f.name: file_record(f) for f in files}
    manifest.made = manifest.made or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if output.name.lower().endswith(ARCHIVE_SUFFIXES):
        _write_archive(files, manifest, output)
    else:
        if output.exists() and not is_bundle(output):
            raise EdgevisionError(f"{output} exists and is not a bundle; choose another output.")
        with staging_dir(output) as folder:
            _fill(folder, files, manifest)
    return output


def _fill(folder: Path, files: list[Path], manifest: BundleManifest) -> None:
    for file in files:
        shutil.copyfile(file, folder / file.name)
    (folder / MANIFEST).write_text(json.dumps(manifest.to_dict(), indent=2) + "\n")


def _write_archive(files: list[Path], manifest: BundleManifest, output: Path) -> None:
    folder_name = output.name[: -len(next(s for s in ARCHIVE_SUFFIXES if output.name.lower().endswith(s)))]
    with atomic_path(output) as tmp, tarfile.open(tmp, "w:gz") as archive:
        for file in files:
            archive.add(file, arcname=f"{folder_name}/{file.name}", recursive=False)
        data = (json.dumps(manifest.to_dict(), indent=2) + "\n").encode()
        info = tarfile.TarInfo(f"{folder_name}/{MANIFEST}")
        info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
        archive.addfile(info, io.BytesIO(data))


def read_manifest(folder: Path) -> BundleManifest:
    """The manifest of bundle folder ``folder``; one sentence when it is missing or unreadable."""
    path = Path(folder) / MANIFEST
    try:
        fields = json.loads(path.read_text())
    except FileNotFoundError:
        raise EdgevisionError(f"{folder} is not a bundle: it has no {MANIFEST}.") from None
    except (OSError, ValueError) as exc:
        raise EdgevisionError(f"the bundle manifest {path} is unreadable ({exc}).") from None
    if not isinstance(fields, dict) or "model" not in fields or "runtime" not in fields:
        raise EdgevisionError(f"the bundle manifest {path} lacks 'model' or 'runtime'; export the bundle again.")
    if fields.get("format", FORMAT) > FORMAT:
        raise EdgevisionError(
            f"the bundle {folder} has format {fields['format']}, newer than this edgevision reads ({FORMAT}); "
            "upgrade edgevision."
        )
    known = set(BundleManifest.__dataclass_fields__)
    return BundleManifest(**{k: v for k, v in fields.items() if k in known})


def verify_bundle(folder: Path) -> BundleManifest:
    """The manifest of ``folder`` after checking every file against its recorded sha256."""
    manifest = read_manifest(folder)
    if manifest.model not in manifest.files:
        raise EdgevisionError(f"the bundle {folder} does not record its model file {manifest.model}.")
    for name, record in manifest.files.items():
        path = Path(folder) / name
        if Path(name).name != name:
            raise EdgevisionError(f"the bundle {folder} names a file outside itself: {name}.")
        if not path.is_file():
            raise EdgevisionError(f"the bundle {folder} is missing {name}; export it again.")
        if path.stat().st_size != record.get("bytes") or sha256_file(path) != record.get("sha256"):
            raise EdgevisionError(f"{name} in the bundle {folder} does not match its recorded sha256; export it again.")
    return manifest


# Companion files of the bundles opened in this process, by file name: decoders that run a
# second model (BlazePose's person detector) look here before the zoo's cache.
_COMPANIONS: dict[str, Path] = {}


def open_bundle(path: Path) -> Path:
    """The model file inside bundle ``path`` (a folder or an archive), every hash checked."""
    path = Path(path)
    folder = _unpacked(path) if path.is_file() else path
    manifest = verify_bundle(folder)
    for name in manifest.companions:
        _COMPANIONS[name] = folder / name
    return folder / manifest.model


def run_precision(model_file: Path) -> str | None:
    """The precision option the bundle holding ``model_file`` runs it with (``openvino-bf16``:
    ``bf16``, ``ncnn-fp16``: ``fp16``); None for a file outside a bundle or one without."""
    manifest_path = Path(model_file).parent / MANIFEST
    if not manifest_path.is_file():
        return None
    manifest = read_manifest(manifest_path.parent)
    return manifest.inference if manifest.model == Path(model_file).name else None


def companion_file(name: str) -> Path | None:
    """The companion file ``name`` of the last bundle opened here that carries one, else None."""
    return _COMPANIONS.get(name)


def _unpacked(archive: Path) -> Path:
    """The archive's bundle folder in the cache, unpacked once (keyed by the archive's sha256)."""
    digest = sha256_file(archive)
    target = cache_dir("bundles") / digest[:16]
    if not (target / MANIFEST).is_file():
        try:
            with staging_dir(target) as folder, tarfile.open(archive, "r:gz") as tar:
                members = [m for m in tar.getmembers() if m.isfile()]
                if not any(Path(m.name).name == MANIFEST for m in members):
                    raise EdgevisionError(f"{archive} is not a bundle: it has no {MANIFEST}.")
                for member in members:  # flat: each file by its own name, nothing outside the folder
                    source = tar.extractfile(member)
                    with source, open(folder / Path(member.name).name, "wb") as out:
                        shutil.copyfileobj(source, out)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise EdgevisionError(f"{archive} is not a readable .tar.gz bundle ({exc}).") from None
    return target
