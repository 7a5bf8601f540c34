"""Event clips as mp4 files that web browsers play: H.264 when ffmpeg or OpenCV can write it, else MPEG-4 Part 2.

Browsers play H.264 in mp4 but not the MPEG-4 Part 2 (``mp4v``) that every OpenCV build
writes, and the pip wheels of OpenCV carry no H.264 encoder. So a clip goes, in turn, to
the ``ffmpeg`` program with libx264 (when it is on PATH), to OpenCV's own H.264 writer
(builds linked to a system FFmpeg with libx264), and last to ``mp4v``, which OpenCV and
video players read but the web page can only offer for download. An encoder that fails
before it ever worked is not tried again in this process. A full disk is not the encoder's
fault: it raises ``OSError`` (ENOSPC) at once, and no half-written clip is left as if whole.

``hurry`` (an event set when the service is stopping) trades the codec for the clip: once
it is set, a clip still being encoded to H.264 is written as ``mp4v`` instead, which
takes a fraction of the time, so the clip is kept before the process ends.

>>> write_mp4(Path("clip.mp4"), frames, fps=10.0)    # doctest: +SKIP
'h264'
"""

from __future__ import annotations

import errno
import logging
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from edgevision.errors import EdgevisionError
from edgevision.files import disk_free

logger = logging.getLogger(__name__)

FFMPEG_TIMEOUT_S = 120.0
MIN_FREE = 1_000_000  # bytes a disk must have free for a clip to be tried on it
_failed: set[str] = set()  # encoders that failed before they ever worked: not tried again
_worked: set[str] = set()


class _Unavailable(Exception):
    """This encoder cannot write here; the next one is tried."""


class _Hurried(Exception):
    """The service is stopping: the clip goes to the fast encoder instead."""


def write_mp4(path: Path, frames: Sequence[np.ndarray], fps: float, *, hurry: threading.Event | None = None) -> str:
    """Write ``frames`` (BGR, one size) to ``path`` as mp4; the codec used, ``"h264"`` or ``"mp4v"``.

    Once ``hurry`` is set (before or during the H.264 encoding) the clip is written as ``mp4v``.
    """
    _check(frames, fps)
    _room_for(path)
    hurry = hurry or threading.Event()
    for name, encode in _H264.items():
        if name in _failed or hurry.is_set():
            continue
        try:
            encode(path, frames, fps, hurry)
            _worked.add(name)
            return "h264"
        except _Hurried:
            logger.info("clips: stopping, so this clip is written as mp4v rather than waiting for H.264")
            break
        except _Unavailable as exc:
            if name not in _worked:
                _failed.add(name)
            logger.info("clips: %s did not write H.264 (%s)", name, exc)
    if "mp4v" not in _worked and not hurry.is_set():  # a hurried clip says nothing of the encoders here
        _worked.add("mp4v")
        logger.warning(
            "clips are written as MPEG-4 Part 2 (mp4v), which web browsers do not play; "
            "install ffmpeg (with libx264) for clips that play in the web page"
        )
    _opencv(path, frames, fps, "mp4v")
    return "mp4v"


def _check(frames: Sequence[np.ndarray], fps: float) -> None:
    if not len(frames):
        raise EdgevisionError("a clip needs at least one frame.")
    if not (fps > 0):
        raise EdgevisionError(f"a clip's fps must be above 0, got {fps}.")
    height, width = frames[0].shape[:2]
    for frame in frames:
        if frame.shape[:2] != (height, width):
            raise EdgevisionError(
                f"every frame of a clip must be {width}x{height}, got {frame.shape[1]}x{frame.shape[0]}."
            )


def _ffmpeg_h264(path: Path, frames: Sequence[np.ndarray], fps: float, hurry: threading.Event) -> None:
    program = shutil.which("ffmpeg")
    if program is None:
        raise _Unavailable("no ffmpeg on PATH")
    height, width = frames[0].shape[:2]
    command = [
        program, "-hide_banner", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}", "-r", f"{fps:g}", "-i", "-",
        "-an", "-vf", "crop=trunc(iw/2)*2:trunc(ih/2)*2",  # 4:2:0 needs even sides
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "26", "-pix_fmt", "yuv420p",
        "-threads", "1",  # leave the other cores to the model
        "-movflags", "+faststart", "-f", "mp4", str(path),
    ]  # fmt: skip
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors)
        try:
            for frame in frames:
                if hurry.is_set():
                    raise _Hurried
                process.stdin.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())
            process.stdin.close()
            code = _wait(process, hurry)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            process.kill()
            code = process.wait()
        except _Hurried:
            process.kill()
            process.wait()
            raise
        errors.seek(0)
        said = errors.read().decode(errors="replace").strip().splitlines()
    if code != 0:
        if any("No space left" in line for line in said):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        raise _Unavailable(f"ffmpeg exited with {code}: {said[-1] if said else 'no message'}")


def _wait(process: subprocess.Popen, hurry: threading.Event) -> int:
    """``process``'s exit code; raises ``_Hurried`` when ``hurry`` is set first, TimeoutExpired after
    ``FFMPEG_TIMEOUT_S``."""
    deadline = time.monotonic() + FFMPEG_TIMEOUT_S
    while True:
        try:
            return process.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            if hurry.is_set():
                raise _Hurried from None
            if time.monotonic() > deadline:
                raise


def _opencv_h264(path: Path, frames: Sequence[np.ndarray], fps: float, hurry: threading.Event) -> None:
    _opencv(path, frames, fps, "avc1")


def _opencv(path: Path, frames: Sequence[np.ndarray], fps: float, fourcc: str) -> None:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), float(fps), (width, height))
    if not writer.isOpened():
        if fourcc != "mp4v":
            raise _Unavailable(f"OpenCV has no {fourcc} encoder")
        raise EdgevisionError(f"OpenCV cannot write an mp4 clip at {path}; is its video writer installed?")
    try:
        for frame in frames:
            writer.write(np.ascontiguousarray(frame, dtype=np.uint8))
    finally:
        writer.release()
    if not _readable(path):  # OpenCV says nothing when a write fails: a disk that filled meanwhile
        _room_for(path)
        if fourcc != "mp4v":
            raise _Unavailable(f"OpenCV's {fourcc} writer wrote an unreadable file")
        raise EdgevisionError(f"OpenCV wrote an unreadable clip at {path}.")


def _room_for(path: Path) -> None:
    """Raise ENOSPC when the disk of ``path`` has less than ``MIN_FREE`` bytes free."""
    if disk_free(path.parent) < MIN_FREE:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))


def _readable(path: Path) -> bool:
    """Whether ``path`` opens as a video with at least one frame (its header only is read)."""
    capture = cv2.VideoCapture(str(path))
    try:
        return capture.isOpened() and capture.get(cv2.CAP_PROP_FRAME_COUNT) >= 1
    finally:
        capture.release()


_H264: dict[str, Callable[[Path, Sequence[np.ndarray], float, threading.Event], None]] = {
    "ffmpeg": _ffmpeg_h264,
    "opencv-h264": _opencv_h264,
}
