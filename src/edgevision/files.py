"""File safety: the cache root, hashes, and writes that never leave half a file behind.

Every writer in edgevision goes through here: a file appears at its final path only when
it is complete (written to a temporary file beside it, then renamed), and a folder of
results appears only when every file in it was made.

>>> import tempfile, pathlib
>>> target = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
>>> write_atomic(target, b"done")
>>> target.read_bytes()
b'done'
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def cache_root() -> Path:
    """``$EDGEVISION_CACHE``, else ``$XDG_CACHE_HOME/edgevision``, else ``~/.cache/edgevision``."""
    if os.environ.get("EDGEVISION_CACHE"):
        return Path(os.environ["EDGEVISION_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edgevision"


def cache_dir(*parts: str) -> Path:
    """A folder under the cache root, created when missing."""
    path = cache_root().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """The sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def make_readable(path: Path) -> None:
    """Give a temporary file (created private) the permissions of a normal new file."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def temp_beside(path: Path) -> Path:
    """A new empty hidden file beside ``path`` with the same suffix (writers pick formats by it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    make_readable(Path(tmp))
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path (same file name, in a hidden folder beside ``path``) to write to.

    It is renamed to ``path`` only if the block succeeds and wrote the file; on any error
    the temporary folder is removed and ``path`` is left as it was. For writers that take
    a file name and pick the format by its suffix (OpenCV, ONNX, ONNX Runtime, torch).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    tmp = folder / path.name
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"nothing was written for {path}")
        os.replace(tmp, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, so readers never see half a file."""
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(data)


def copy_atomic(source: Path, target: Path) -> Path:
    """Copy ``source`` to ``target`` so that ``target`` is either absent/old or complete."""
    with atomic_path(Path(target)) as tmp:
        shutil.copyfile(source, tmp)
    return Path(target)


class PendingFile:
    """A file written over time (a video, JSON lines) that appears at ``path`` only on ``commit``.

    ``discard`` removes what was written; ``path`` keeps its old content until commit.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.tmp = temp_beside(self.path)

    def commit(self) -> None:
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def staging_dir(final: Path) -> Iterator[Path]:
    """A temporary folder beside ``final`` that becomes ``final`` only if the block succeeds.

    On any error the temporary folder is removed, so the cache never holds half a model.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
