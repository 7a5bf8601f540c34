"""Where results go: annotated video, annotated images, JSON lines.

Files are written beside their destination under a temporary name and moved into place
when complete, so an interrupted run never leaves half a file under the real name.
``close(keep=False)`` removes what a sink made: temporary files, images, folders.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO

import cv2
import numpy as np

from edgevision.errors import EdgevisionError
from edgevision.files import PendingFile, make_folders, remove_empty_folders
from edgevision.media import write_image


class VideoSink:
    """Writes frames to a video file (``mp4v`` for .mp4, ``MJPG`` for .avi)."""

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in (".mp4", ".avi"):
            raise EdgevisionError(f"annotated video must be .mp4 or .avi, got {self.path.name}.")
        self.fps = fps
        self.frames = 0
        self._file = PendingFile(self.path)
        self._writer: cv2.VideoWriter | None = None

    def write(self, image: np.ndarray) -> None:
        if self._writer is None:
            fourcc = cv2.VideoWriter_fourcc(*("mp4v" if self.path.suffix.lower() == ".mp4" else "MJPG"))
            h, w = image.shape[:2]
            self._writer = cv2.VideoWriter(str(self._file.tmp), fourcc, self.fps, (w, h))
            if not self._writer.isOpened():
                raise EdgevisionError(f"cannot write video {self.path}; is the folder writable?")
        self._writer.write(image)
        self.frames += 1

    @property
    def made(self) -> list[Path]:
        """The folders created for this file."""
        return self._file.made

    def close(self, *, keep: bool = True) -> None:
        """Finish the file and move it into place (or discard it when ``keep`` is False)."""
        if self._writer is not None:
            self._writer.release()
        if keep and self.frames:
            self._file.commit()
        else:
            self._file.discard()


class ImageFolderSink:
    """Writes each annotated image under its own name into a folder, made at the first image."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise EdgevisionError(f"{folder} is a file; give a folder for annotated images.")
        self.frames = 0
        self.made: list[Path] = []  # folders this sink created
        self._new: list[Path] = []  # images that were not there before

    def write(self, image: np.ndarray, name: str) -> Path:
        """Write ``image`` as ``name``, a path relative to the folder (its folders are made)."""
        target = self.folder / name
        if not target.parent.is_dir():
            self.made += make_folders(target.parent)
        is_new = not target.exists()
        write_image(target, image)
        if is_new:
            self._new.append(target)
        self.frames += 1
        return target

    def close(self, *, keep: bool = True) -> None:
        """Keep the images, or remove the ones this sink added and the folders it made."""
        if keep:
            return
        for path in self._new:
            path.unlink(missing_ok=True)
        remove_empty_folders(self.made)


class JsonLinesSink:
    """One JSON object per line to a file (moved into place on close) or to standard output."""

    def __init__(self, path: str) -> None:
        self.path = None if path == "-" else Path(path)
        self._pending = None if self.path is None else PendingFile(self.path)
        self._file: IO[str] = sys.stdout
        if self._pending is not None:
            try:
                self._file = open(self._pending.tmp, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
            except BaseException:
                self._pending.discard()
                raise

    @property
    def made(self) -> list[Path]:
        """The folders created for this file."""
        return self._pending.made if self._pending is not None else []

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self, *, keep: bool = True) -> None:
        if self._pending is None:
            return
        self._file.close()
        if keep:
            self._pending.commit()
        else:
            self._pending.discard()


def close_all(sinks, *, keep: bool) -> None:
    """Close every sink (None entries skipped), even when one fails; the first error is raised after.

    Without ``keep``, the folders the sinks created are removed too once all are closed (a
    folder made for one sink may hold another's files until then).
    """
    sinks = [sink for sink in sinks if sink is not None]
    failure: BaseException | None = None
    for sink in sinks:
        try:
            sink.close(keep=keep)
        except BaseException as exc:  # noqa: BLE001 - the others still get closed; raised below
            failure = failure or exc
    if not keep:
        remove_empty_folders([folder for sink in sinks for folder in sink.made])
    if failure is not None:
        raise failure
