"""Media in and out: images, folders and globs of images, and video files.

>>> is_video("clip.mp4"), is_video("photo.jpg")
(True, False)
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Iterator
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


def read_image(path: Path) -> np.ndarray:
    """Read ``path`` as BGR uint8; a clear error when it is not an image."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise EdgevisionError(f"{path} is not an image edgevision can read.")
    return image


def count_frames(source: str) -> int | None:
    """How many frames ``source`` will give, when known in advance."""
    if is_video(source):
        cap = cv2.VideoCapture(source)
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
        cap.release()
        return n or None
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
    read is an error.

    >>> frames = Frames("clip.avi")                     # doctest: +SKIP
    >>> sum(1 for _ in frames), frames.corrupt          # doctest: +SKIP
    (11, 1)
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.corrupt = 0

    def __iter__(self) -> Iterator[Frame]:
        if not is_video(self.source):
            for path in list_images(self.source):
                yield Frame(read_image(path), str(path), 0)
            return
        yield from self._video()

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
