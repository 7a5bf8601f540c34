"""Media in and out: images, folders and globs of images, and video files.

>>> is_video("clip.mp4"), is_video("photo.jpg")
(True, False)
"""

from __future__ import annotations

import contextlib
import glob
import logging
import math
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgevision.errors import EdgevisionError
from edgevision.files import atomic_path
from edgevision.types import Frame

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts")


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def list_images(source: str) -> list[Path]:
    """The image files named by ``source``: one file, a folder (sorted) or a glob pattern."""
    if any(c in source for c in "*?["):
        paths = sorted(Path(p) for p in glob.glob(source, recursive=True))
        images = [p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES]
        if not images:
            raise EdgevisionError(f"no images match '{source}'.")
        return images
    path = Path(source)
    if not path.exists():
        raise EdgevisionError(f"{source} does not exist.")
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise EdgevisionError(f"folder {source} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
        return images
    return [path]


@dataclass(frozen=True)
class MediaFile:
    """One image or video file named by the sources, and a name for its outputs.

    ``name`` is its file name, with as many parent folders as it takes to tell it from the
    other files: two folders that each hold ``a.jpg`` give ``day/a.jpg`` and ``night/a.jpg``.
    """

    path: Path
    name: str

    @property
    def video(self) -> bool:
        return is_video(self.path)


def expand_sources(sources: str | Path | Sequence[str | Path]) -> list[MediaFile]:
    """The files of ``sources`` (images, folders or globs of images, video files), each once.

    A file named twice (also through a folder or a glob, or by another spelling of its
    path) is read once, where it first appears. A missing source, or a folder or glob
    holding no image, is one sentence.

    >>> [f.name for f in expand_sources(["day/a.jpg", "night/a.jpg", "day/a.jpg"])]  # doctest: +SKIP
    ['day/a.jpg', 'night/a.jpg']
    """
    sources = [sources] if isinstance(sources, (str, Path)) else list(sources)
    if not sources:
        raise EdgevisionError("give at least one image, folder or glob of images, or video file.")
    seen: dict[str, Path] = {}
    for source in sources:
        for path in _files_of(str(source)):
            key = os.path.realpath(path)
            if key in seen:
                logger.debug("%s is named more than once (also as %s): read once", path, seen[key])
            else:
                seen[key] = path
    return _named(list(seen.values()))


def _files_of(source: str) -> list[Path]:
    if is_video(source) and not any(c in source for c in "*?["):
        if not Path(source).is_file():
            raise EdgevisionError(f"{source} does not exist; check the path.")
        return [Path(source)]
    return list_images(source)


def _named(paths: list[Path]) -> list[MediaFile]:
    """Each path with the shortest end of it (file name, then parent folders) no other path shares.

    The paths are different files, so their absolute paths differ and whole paths always do.
    """
    parts = [Path(os.path.abspath(p)).parts for p in paths]
    depth = [1] * len(paths)
    for _ in range(max(map(len, parts))):
        names = ["/".join(p[-d:]) for p, d in zip(parts, depth)]
        clashing = {name for name, n in Counter(names).items() if n > 1}
        if not clashing:
            break
        depth = [d + 1 if name in clashing else d for d, name in zip(depth, names)]
    return [MediaFile(path, name) for path, name in zip(paths, names)]


def read_image(path: Path) -> np.ndarray:
    """Read ``path`` as BGR uint8; a clear error when it is not an image."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise EdgevisionError(f"{path} is not an image edgevision can read.")
    return image


def count_frames(source: str, *, every: int = 1, max_frames: int | None = None) -> int | None:
    """How many frames ``source`` will give (``Frames`` with the same options), when known in advance."""
    if is_video(source):
        cap = cv2.VideoCapture(source)
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
        cap.release()
        kept = math.ceil(n / every) if n else max_frames
        return min(kept, max_frames) if kept and max_frames else kept
    return len(list_images(source))


def open_video(path: str) -> cv2.VideoCapture:
    """An opened capture for a video file; a clear error when it cannot be decoded."""
    if not Path(path).exists():
        raise EdgevisionError(f"{path} does not exist.")
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise EdgevisionError(f"cannot open video {path}; is it a video file OpenCV can decode?")
    return cap


MAX_CORRUPT_RUN = 25
"""Undecodable frames in a row that end a video (OpenCV reports the end of a file the same way)."""


def read_decodable(cap: cv2.VideoCapture, *, max_failures: int = MAX_CORRUPT_RUN) -> tuple[np.ndarray | None, int]:
    """The next frame OpenCV can decode, and how many undecodable frames were skipped before it.

    ``(None, 0)`` after ``max_failures`` + 1 failed reads in a row: the end of the file.
    """
    for failures in range(max_failures + 1):
        ok, image = cap.read()
        if ok:
            return image, failures
    return None, 0


class Frames:
    """The frames of a video file, or the images of a file, folder or glob, in order.

    Video frames that cannot be decoded are skipped (their indices too, so ``frame.index``
    stays the position in the file) and counted in ``corrupt``; an image that cannot be
    read is an error. Of a video, only every ``every``-th frame is given (indices 0,
    ``every``, ...), and at most ``max_frames`` of them.

    >>> frames = Frames("clip.avi")                     # doctest: +SKIP
    >>> sum(1 for _ in frames), frames.corrupt          # doctest: +SKIP
    (11, 1)
    """

    def __init__(self, source: str, *, every: int = 1, max_frames: int | None = None) -> None:
        if every < 1 or (max_frames is not None and max_frames < 1):
            raise EdgevisionError(f"every and max_frames must be 1 or more, got {every} and {max_frames}.")
        self.source = source
        self.every = every
        self.max_frames = max_frames
        self.corrupt = 0

    def __iter__(self) -> Iterator[Frame]:
        if not is_video(self.source):
            for path in list_images(self.source):
                yield Frame(read_image(path), str(path), 0)
            return
        given = 0
        with contextlib.closing(self._video()) as frames:
            for frame in frames:
                if frame.index % self.every:
                    continue
                yield frame
                given += 1
                if given == self.max_frames:
                    return

    def _video(self) -> Iterator[Frame]:
        path = self.source
        cap = open_video(path)
        try:
            index = 0
            while (found := read_decodable(cap))[0] is not None:
                image, skipped = found
                if skipped:
                    logger.warning("skipped %d corrupt frame(s) at frame %d of %s", skipped, index, path)
                    self.corrupt += skipped
                    index += skipped
                yield Frame(image, path, index)
                index += 1
            if index == 0:
                raise EdgevisionError(f"cannot read any frame from {path}; is the video empty or corrupt?")
        finally:
            cap.release()


def iter_video(path: str) -> Iterator[Frame]:
    """Every frame of a video file OpenCV can decode (undecodable ones are skipped)."""
    return iter(Frames(path))


def iter_frames(source: str) -> Iterator[Frame]:
    """Frames of a video file, or the images of a file, folder or glob, in order."""
    return iter(Frames(source))


def video_fps(source: str, default: float = 10.0) -> float:
    cap = cv2.VideoCapture(source)
    fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
    cap.release()
    return fps if 0 < fps < 1000 else default


def write_image(path: Path, image: np.ndarray, params: tuple[int, ...] = ()) -> Path:
    """Write ``image`` to ``path`` (format by suffix) atomically; a clear error when it cannot."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            if not cv2.imwrite(str(tmp), image, list(params)):
                raise OSError("the encoder refused the image or the suffix")
    except OSError as exc:
        raise EdgevisionError(f"cannot write image {path} ({exc}); check the folder and the file suffix.") from None
    return path
