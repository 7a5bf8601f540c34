"""Checks of what a command reads and writes, asked before any model is loaded.

Every command, and the API call behind it, asks these first: a mistyped path, a folder
where a file is written, an unwritable place or a file type the writer cannot make is one
sentence before any expensive work. Asking creates nothing.

>>> output_file("runs/out.mkv", suffixes=VIDEO_OUT, what="annotated video")
Traceback (most recent call last):
...
edgevision.errors.EdgevisionError: annotated video must end in .mp4 or .avi, got out.mkv.
"""

from __future__ import annotations

import glob
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import cv2

from edgevision.errors import EdgevisionError
from edgevision.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES, is_video, list_images

logger = logging.getLogger(__name__)

VIDEO_OUT = (".mp4", ".avi")  # what the annotated-video writer encodes (mp4v, MJPG)
JSON_LINES = (".jsonl", ".ndjson", ".json")
JSON = (".json",)
GRAPH = (".html", ".htm", ".svg")
MAX_THREADS = 1024  # far above any CPU edgevision runs on; beyond it runtimes overflow their counters
DEVICE_FOLDER = Path("/dev")  # writable by root, but a rename there replaces device nodes
SHARED_MEMORY = Path("/dev/shm")


def is_pattern(source: str) -> bool:
    """True when ``source`` is a glob pattern rather than one path."""
    return any(c in source for c in "*?[")


def input_file(path: str | Path, *, what: str) -> Path:
    """``path`` as a readable file; one sentence when it is missing, a folder or unreadable."""
    path = Path(path)
    if not path.exists():
        raise EdgevisionError(f"{what} {path} does not exist; check the path.")
    if path.is_dir():
        raise EdgevisionError(f"{what} {path} is a folder; give a file.")
    _readable(path, what)
    return path


def media_input(source: str | Path, *, what: str = "source") -> None:
    """Raise unless ``source`` (an image, a video, a folder or a glob of images) can be read.

    Images are checked by their signature (OpenCV has a decoder for them), not decoded.
    """
    source = str(source)
    if is_pattern(source):
        if not glob.glob(source, recursive=True):
            raise EdgevisionError(f"{what} '{source}' matches no file; check the pattern.")
    else:
        path = Path(source)
        if not path.exists():
            raise EdgevisionError(f"{what} {source} does not exist; check the path.")
        if path.is_dir() and not os.access(path, os.R_OK | os.X_OK):
            raise EdgevisionError(f"{what} folder {source} cannot be read; check its permissions.")
        if path.is_file():
            _readable(path, what)
        if is_video(source):
            return
    for image in list_images(source):
        if not cv2.haveImageReader(str(image)):
            raise EdgevisionError(f"{image} is not an image edgevision can read; remove it or convert it.")


def _readable(path: Path, what: str) -> None:
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise EdgevisionError(f"{what} {path} cannot be read ({exc.strerror or exc}); check its permissions.") from None


def output_file(path: str | Path, *, suffixes: tuple[str, ...], what: str) -> Path:
    """``path`` as a file the writer can make: its suffix one of ``suffixes``, its place writable."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise EdgevisionError(f"{what} must end in {_either(suffixes)}, got {path.name or path}.")
    if path.is_dir():
        raise EdgevisionError(
            f"{path} is a folder, but {what} is a file; give a file name ending in {_either(suffixes)}."
        )
    writable_place(path)
    return path


def output_folder(path: str | Path, *, what: str) -> Path:
    """``path`` as a folder the writer can fill: not an existing file, inside a writable place."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise EdgevisionError(f"{path} is a file, but {what} is a folder; give a folder name.")
    writable_place(path)
    return path


def annotated_output(path: str | Path, *, video: bool) -> Path:
    """An annotated video (``.mp4``/``.avi``) when ``video``, else a folder of annotated images."""
    path = Path(path)
    if video:
        return output_file(path, suffixes=VIDEO_OUT, what="annotated video")
    if path.suffix.lower() in VIDEO_SUFFIXES + IMAGE_SUFFIXES:
        raise EdgevisionError(f"annotated images go into a folder; give a folder name, not {path.name}.")
    return output_folder(path, what="the folder of annotated images")


def json_lines_output(path: str | Path | None, *, what: str = "JSON lines") -> None:
    """Raise unless ``path`` (None: not written, ``-``: standard output) can take JSON lines."""
    if path is not None and str(path) != "-":
        output_file(path, suffixes=JSON_LINES, what=what)


def writable_place(path: str | Path) -> None:
    """Raise unless a file or folder can be made at ``path`` (by trying a nameless file nearby).

    The nearest folder that exists on the way to ``path`` must be a folder one can write in,
    outside the system's pseudo file systems; folders on the way are not created.
    """
    path = Path(path)
    target = Path(os.path.abspath(path))
    if target.is_relative_to(DEVICE_FOLDER) and not target.is_relative_to(SHARED_MEMORY):
        raise EdgevisionError(f"{path} is in {DEVICE_FOLDER}, where devices live; write somewhere else.")
    if target.exists() and not (target.is_file() or target.is_dir()):
        raise EdgevisionError(f"{path} is not a regular file or folder; write somewhere else.")
    folder = target if target.is_dir() else target.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise EdgevisionError(f"{folder} is a file, so {path} cannot be made under it; choose another place.")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise EdgevisionError(
            f"cannot write in {folder} ({exc.strerror or exc}); choose a place you can write to."
        ) from None


def _either(suffixes: tuple[str, ...]) -> str:
    return suffixes[0] if len(suffixes) == 1 else f"{', '.join(suffixes[:-1])} or {suffixes[-1]}"


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity), not all the machine has."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_workers(workers: int) -> None:
    """Raise unless ``workers`` (frames inferred at once) is at least 1."""
    if workers < 1:
        raise EdgevisionError(f"workers must be 1 or more, got {workers}.")


def check_threads(threads: Iterable[int | None]) -> None:
    """Raise for a thread count outside 1..``MAX_THREADS``; log one warning when one is above the
    usable cores (the extra threads only wait, which usually slows inference down)."""
    threads = [t for t in threads if t is not None]
    wrong = [t for t in threads if not 1 <= t <= MAX_THREADS]
    if wrong:
        raise EdgevisionError(f"threads must be 1 to {MAX_THREADS}, got {wrong[0]}.")
    cores = usable_cores()
    over = sorted({t for t in threads if t is not None and t > cores})
    if over:
        counts = ", ".join(map(str, over))
        logger.warning(
            "%s thread(s) asked for, but only %d core(s) are usable: the extra threads wait for a core.", counts, cores
        )
