"""Where results go: annotated video, annotated images, JSON lines.

Files are written beside their destination under a temporary name and moved into place
when complete, so an interrupted run never leaves half a file under the real name.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import IO

import cv2
import numpy as np

from edgevision.errors import EdgevisionError
from edgevision.zoo.cache import make_readable


def _temp_beside(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    make_readable(Path(tmp))
    return Path(tmp)


class VideoSink:
    """Writes frames to a video file (``mp4v`` for .mp4, ``MJPG`` for .avi)."""

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in (".mp4", ".avi"):
            raise EdgevisionError(f"annotated video must be .mp4 or .avi, got {self.path.name}.")
        self.fps = fps
        self.frames = 0
        self._tmp = _temp_beside(self.path)
        self._writer: cv2.VideoWriter | None = None

    def write(self, image: np.ndarray) -> None:
        if self._writer is None:
            fourcc = cv2.VideoWriter_fourcc(*("mp4v" if self.path.suffix.lower() == ".mp4" else "MJPG"))
            h, w = image.shape[:2]
            self._writer = cv2.VideoWriter(str(self._tmp), fourcc, self.fps, (w, h))
            if not self._writer.isOpened():
                raise EdgevisionError(f"cannot write video {self.path}; is the folder writable?")
        self._writer.write(image)
        self.frames += 1

    def close(self, *, keep: bool = True) -> None:
        """Finish the file and move it into place (or discard it when ``keep`` is False)."""
        if self._writer is not None:
            self._writer.release()
        if keep and self.frames:
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)


class ImageFolderSink:
    """Writes each annotated image under its own file name into a folder."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise EdgevisionError(f"{folder} is a file; give a folder for annotated images.")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.frames = 0

    def write(self, image: np.ndarray, name: str) -> Path:
        target = self.folder / Path(name).name
        tmp = _temp_beside(target)
        if not cv2.imwrite(str(tmp), image):
            tmp.unlink(missing_ok=True)
            raise EdgevisionError(f"cannot write {target}.")
        os.replace(tmp, target)
        self.frames += 1
        return target

    def close(self, *, keep: bool = True) -> None:
        pass


class JsonLinesSink:
    """One JSON object per line to a file (moved into place on close) or to standard output."""

    def __init__(self, path: str) -> None:
        self.path = None if path == "-" else Path(path)
        self._tmp = None if self.path is None else _temp_beside(self.path)
        self._file: IO[str] = sys.stdout if self._tmp is None else open(self._tmp, "w")

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self, *, keep: bool = True) -> None:
        if self._tmp is None:
            return
        self._file.close()
        if keep:
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)
