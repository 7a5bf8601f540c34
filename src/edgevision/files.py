"""File safety: the cache root, hashes, and writes that never leave half a file behind.

Every writer in edgevision goes through here: a file appears at its final path only when
it is complete (written to a temporary file beside it, flushed to disk, then renamed), and
a folder of results appears only when every file in it was made. A failure, Ctrl-C or a
stop signal removes the temporary file, so no hidden ``.name-*`` leftovers remain. Cached
files are checked against their recorded hashes (``damaged_files``): in full, or cheaply
through a stamp.

>>> import tempfile, pathlib
>>> target = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
>>> write_atomic(target, b"done")
>>> target.read_bytes()
b'done'
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from edgevision.errors import EdgevisionError

logger = logging.getLogger(__name__)

STAMPS = "stamps.json"  # per folder: {file name: [size, mtime_ns]} of files that last matched their hash
_SET_CACHE = "set EDGEVISION_CACHE to a folder you can write to"
_SETTLE_NS = 2_000_000_000


def cache_root() -> Path:
    """``$EDGEVISION_CACHE``, else ``$XDG_CACHE_HOME/edgevision``, else ``~/.cache/edgevision``."""
    if os.environ.get("EDGEVISION_CACHE"):
        root = Path(os.environ["EDGEVISION_CACHE"]).expanduser()
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgevision"
    if root.exists() and not root.is_dir():
        raise EdgevisionError(f"the edgevision cache {root} is a file, not a folder; {_SET_CACHE}.")
    return root


def cache_dir(*parts: str) -> Path:
    """A folder under the cache root, created when missing; a clear error when it cannot be.

    An existing read-only cache still serves what it holds (a device with a read-only root
    file system); writing into it fails with one sentence (see ``writable_folder``).
    """
    path = cache_root().joinpath(*parts)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgevisionError(f"cannot create the cache folder {path} ({exc.strerror or exc}); {_SET_CACHE}.") from None
    return path


@contextlib.contextmanager
def writable_folder(folder: Path) -> Iterator[None]:
    """Turn a failure to create ``folder`` or a file in it into one sentence that says what to do."""
    try:
        yield
    except (PermissionError, FileExistsError, NotADirectoryError) as exc:
        raise EdgevisionError(f"cannot write in {folder} ({exc.strerror or exc}); {_where_instead(folder)}.") from None
    except OSError as exc:
        if exc.errno != errno.EROFS:
            raise
        raise EdgevisionError(f"cannot write in {folder} (read-only file system); {_where_instead(folder)}.") from None


def _where_instead(folder: Path) -> str:
    try:
        in_cache = Path(folder).resolve().is_relative_to(cache_root().resolve())
    except EdgevisionError:
        in_cache = False
    return _SET_CACHE if in_cache else "choose a folder you can write to"


def disk_free(folder: Path) -> int:
    """Bytes free for this user on the disk of ``folder`` (0 when it cannot be read)."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 0


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """The sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_file(path: Path) -> None:
    """Flush ``path``'s content to disk, so that a rename after a crash never shows an empty file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename into it) to disk; skipped where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems do not sync folders; the rename itself is still atomic
    finally:
        os.close(fd)


def replace_durably(tmp: Path, path: Path) -> None:
    """Rename the complete file ``tmp`` to ``path``: its content on disk first, then the rename."""
    fsync_file(tmp)
    os.replace(tmp, path)
    fsync_folder(path.parent)


def make_readable(path: Path) -> None:
    """Give a temporary file (created private) the permissions of a normal new file."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return the ones created, deepest first.

    Give the list to :func:`remove_empty_folders` to take them away again after a failure.
    """
    folder = Path(folder)
    missing = [f for f in (folder, *folder.parents) if not f.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove those of ``folders`` that are empty, deepest first."""
    for folder in sorted(folders, key=lambda f: len(Path(f).absolute().parts), reverse=True):
        try:
            folder.rmdir()
        except OSError:
            continue  # not empty (or already gone): its parents stay too


def temp_beside(path: Path) -> Path:
    """A new empty hidden file beside ``path`` with the same suffix (writers pick formats by it)."""
    with writable_folder(path.parent):
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
    with writable_folder(path.parent):
        made = make_folders(path.parent)
        folder = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    tmp = folder / path.name
    done = False
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"nothing was written for {path}")
        replace_durably(tmp, path)
        done = True
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if not done:
            remove_empty_folders(made)


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

    ``discard`` removes what was written (and the folders made for it); ``path`` keeps its
    old content until commit.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.made = make_folders(self.path.parent)  # folders created for it
        self.tmp = temp_beside(self.path)

    def commit(self) -> None:
        replace_durably(self.tmp, self.path)

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)
        remove_empty_folders(self.made)


@contextlib.contextmanager
def staging_dir(final: Path) -> Iterator[Path]:
    """A temporary folder beside ``final`` that becomes ``final`` only if the block succeeds.

    On any error the temporary folder is removed, so the cache never holds half a model.
    """
    with writable_folder(final.parent):
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        yield tmp
        for file in (f for f in tmp.rglob("*") if f.is_file() and not f.is_symlink()):
            fsync_file(file)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_folder(final.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------- cached files that must not change


def file_record(path: Path) -> dict:
    """``{"bytes": size, "sha256": hash}`` of a file, as manifests and metadata files record it."""
    return {"bytes": Path(path).stat().st_size, "sha256": sha256_file(Path(path))}


def damaged_files(folder: Path, records: dict[str, dict], *, full: bool = False) -> dict[str, str]:
    """``{file name: what is wrong}`` for the files of ``folder`` that differ from ``records``.

    ``records`` maps file names to ``file_record``s. A file whose size and mtime are the
    stamp it had when it last matched (in ``folder/stamps.json``) is taken as it is, unless
    ``full``; any other file is hashed, and stamped afresh when it matches. So a check costs
    a few ``stat`` calls until a file is touched, and a touched file costs one hash.
    """
    folder = Path(folder)
    stamps = _read_stamps(folder)
    problems, fresh = {}, {}
    for name, record in records.items():
        problem, stamp = _check_file(folder / name, record, None if full else stamps.get(name))
        if problem:
            problems[name] = problem
        elif stamp != stamps.get(name) and settled(stamp):
            fresh[name] = stamp
    if fresh:
        write_stamps(folder, stamps | fresh)
    return problems


def write_stamps(folder: Path, stamps: dict[str, list[int]]) -> None:
    """Record the settled ``stamps`` (``{name: [size, mtime_ns]}``); a read-only folder means hashing again."""
    kept = {name: stamp for name, stamp in stamps.items() if settled(stamp)}
    try:
        write_atomic(Path(folder) / STAMPS, json.dumps(kept, indent=1, sort_keys=True).encode())
    except (OSError, EdgevisionError) as exc:
        logger.debug("could not record file stamps in %s: %s", folder, exc)


def stamp_of(path: Path) -> list[int]:
    """``[size, mtime_ns]`` of ``path``: what ``damaged_files`` compares before hashing."""
    stat = Path(path).stat()
    return [stat.st_size, stat.st_mtime_ns]


def settled(stamp: list[int]) -> bool:
    """True when the file was last written over 2 s ago. A later write within the same tick of
    the file system's clock would keep the mtime, so a fresher file is not stamped (it is
    hashed again next time instead)."""
    return time.time_ns() - stamp[1] > _SETTLE_NS


def _check_file(path: Path, record: dict, stamp: list[int] | None) -> tuple[str | None, list[int] | None]:
    try:
        now = stamp_of(path)  # taken before hashing: a write during the hash leaves a stale stamp
    except (FileNotFoundError, NotADirectoryError):
        return "is missing", None
    if now[0] != record["bytes"]:
        return f"has {now[0]} bytes instead of {record['bytes']}", None
    if now == stamp:
        return None, now
    if sha256_file(path) != record["sha256"]:
        return "does not match its recorded sha256", None
    return None, now


def _read_stamps(folder: Path) -> dict[str, list[int]]:
    try:
        stamps = json.loads((folder / STAMPS).read_text())
    except (OSError, ValueError):
        return {}
    return stamps if isinstance(stamps, dict) else {}
