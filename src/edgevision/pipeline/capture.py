"""Frame sources of a run: video files, image folders, cameras and network streams.

Every source gives :class:`~edgevision.types.Frame` objects stamped with their
time in the source (``frame.time``, seconds) and the moment they were captured
(``frame.captured``, ``time.perf_counter()``), and ``None`` when it ends.

Corrupt frames of a file are skipped and counted. A network stream that dies is reopened
with exponential back-off; one that never connects fails after ``connect_timeout``.

>>> source = open_source("rtsp://127.0.0.1:8554/cam", stream=StreamConfig(connect_timeout=5))  # doctest: +SKIP
>>> source.live                                                                                # doctest: +SKIP
True
"""

from __future__ import annotations

import logging
import re
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import cv2

from edgevision.errors import EdgevisionError
from edgevision.media import MAX_CORRUPT_RUN, is_video, list_images, open_video, read_decodable
from edgevision.types import Frame

logger = logging.getLogger(__name__)

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
_DEVICE = re.compile(r"^/dev/video(\d+)$")


@dataclass(frozen=True)
class StreamConfig:
    """Timeouts and reconnection of network streams and cameras (seconds).

    ``give_up_after``: stop when a lost source has not come back for this long (None: never).
    """

    connect_timeout: float = 20.0
    read_timeout: float = 10.0
    backoff_initial: float = 0.5
    backoff_max: float = 8.0
    give_up_after: float | None = 120.0


def source_kind(source: str) -> str:
    """``"camera"``, ``"stream"``, ``"video"`` or ``"images"`` for a ``--source`` string.

    >>> [source_kind(s) for s in ("0", "/dev/video2", "rtsp://cam/1", "a.mp4", "photos/*.jpg")]
    ['camera', 'camera', 'stream', 'video', 'images']
    """
    if source.isdigit() or _DEVICE.match(source):
        return "camera"
    scheme, sep, _ = source.partition("://")
    if sep and scheme.lower() in STREAM_SCHEMES:
        return "stream"
    return "video" if is_video(source) else "images"


class CaptureSource(ABC):
    """Frames from one source; ``live`` sources run on their own clock and may drop frames."""

    live: bool = False
    fps: float = 10.0

    def __init__(self, name: str) -> None:
        self.name = name
        self.corrupt = 0  # frames skipped because they could not be decoded
        self.reconnects = 0
        self.index = 0

    @abstractmethod
    def read(self) -> Frame | None:
        """The next frame, or None when the source has ended."""

    def close(self) -> None:  # noqa: B027 - sources with nothing to release keep this no-op
        """Release the device, file or connection."""

    def _frame(self, image, when: float) -> Frame:
        frame = Frame(image, self.name, self.index, time=when, captured=time.perf_counter())
        self.index += 1
        return frame


def _fps_of(cap: cv2.VideoCapture, default: float = 10.0) -> float:
    fps = cap.get(cv2.CAP_PROP_FPS)
    return fps if 0 < fps < 1000 else default


class VideoFileSource(CaptureSource):
    """Every frame of a video file; a frame that cannot be decoded is skipped and counted."""

    def __init__(self, path: str, *, max_corrupt_run: int = MAX_CORRUPT_RUN) -> None:
        super().__init__(path)
        self._cap = open_video(path)
        self.fps = _fps_of(self._cap)
        self.frame_count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        self._max_corrupt_run = max_corrupt_run

    def read(self) -> Frame | None:
        image, failures = read_decodable(self._cap, max_failures=self._max_corrupt_run)
        if image is not None:
            self._skip_corrupt(failures)
            return self._frame(image, self.index / self.fps)
        if self.index == 0:
            raise EdgevisionError(f"cannot read any frame from {self.name}; is the video empty or corrupt?")
        return None

    def _skip_corrupt(self, failures: int) -> None:
        if failures:
            logger.warning("skipped %d corrupt frame(s) at frame %d of %s", failures, self.index, self.name)
            self.corrupt += failures
            self.index += failures

    def close(self) -> None:
        self._cap.release()


class ImageSource(CaptureSource):
    """The images of a file, folder or glob, in order; unreadable images are skipped and counted."""

    def __init__(self, source: str, *, fps: float = 10.0) -> None:
        super().__init__(source)
        self._paths = list_images(source)
        self.frame_count = len(self._paths)
        self.fps = fps

    def read(self) -> Frame | None:
        while self.index < len(self._paths):
            path = self._paths[self.index]
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                frame = self._frame(image, self.index / self.fps)
                frame.source = str(path)
                return frame
            logger.warning("skipped %s: not an image edgevision can read", path)
            self.corrupt += 1
            self.index += 1
        return None


class LiveSource(CaptureSource):
    """A camera or network stream, reopened with exponential back-off when it stops giving frames."""

    live = True

    def __init__(self, name: str, *, config: StreamConfig) -> None:
        super().__init__(name)
        self.config = config
        self._stopping = threading.Event()
        self._start = time.perf_counter()
        self._cap = self._connect_first()
        self.fps = _fps_of(self._cap, default=25.0)

    @abstractmethod
    def _open(self) -> cv2.VideoCapture | None:
        """An opened capture, or None when the source does not answer (yet)."""

    @abstractmethod
    def _never_connected(self) -> EdgevisionError:
        """The error for a source that did not open within ``connect_timeout``."""

    def _connect_first(self) -> cv2.VideoCapture:
        deadline = time.monotonic() + self.config.connect_timeout
        delay = self.config.backoff_initial
        while True:
            cap = self._open()
            if cap is not None:
                return cap
            if time.monotonic() + delay > deadline:
                raise self._never_connected()
            if self._stopping.wait(delay):
                raise self._never_connected()
            delay = min(delay * 2, self.config.backoff_max)

    def read(self) -> Frame | None:
        ok, image = self._cap.read()
        while not ok:
            if not self._reconnect():
                return None
            ok, image = self._cap.read()
        return self._frame(image, time.perf_counter() - self._start)

    def stop(self) -> None:
        """Make a pending reconnection give up and ``read`` return None."""
        self._stopping.set()

    def _reconnect(self) -> bool:
        """Reopen the source, waiting longer after each failure; error after ``give_up_after``.

        False when the run is stopping.
        """
        self._cap.release()
        lost = time.monotonic()
        delay, attempt = self.config.backoff_initial, 0
        logger.warning("%s stopped sending frames; reconnecting with back-off", self.name)
        while True:
            attempt += 1
            waited = time.monotonic() - lost
            if self.config.give_up_after is not None and waited + delay > self.config.give_up_after:
                raise EdgevisionError(
                    f"{self.name} was lost and did not come back within {self.config.give_up_after:g} s; "
                    "check the camera or server and run again."
                )
            logger.info("reconnecting to %s in %.1f s (attempt %d)", self.name, delay, attempt)
            if self._stopping.wait(delay):
                return False
            cap = self._open()
            if cap is not None:
                self._cap, self.reconnects = cap, self.reconnects + 1
                logger.warning(
                    "reconnected to %s after %.1f s (attempt %d)", self.name, time.monotonic() - lost, attempt
                )
                return True
            delay = min(delay * 2, self.config.backoff_max)

    def close(self) -> None:
        self._cap.release()


class StreamSource(LiveSource):
    """An RTSP, HTTP, RTMP, UDP or SRT stream read by OpenCV's FFmpeg backend."""

    def _open(self) -> cv2.VideoCapture | None:
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(self.config.connect_timeout * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(self.config.read_timeout * 1000),
        ]
        cap = cv2.VideoCapture(self.name, cv2.CAP_FFMPEG, params)
        if cap.isOpened():
            return cap
        cap.release()
        return None

    def _never_connected(self) -> EdgevisionError:
        return EdgevisionError(
            f"stream {self.name} did not connect within {self.config.connect_timeout:g} s; "
            "check the address and that the server is running."
        )


class CameraSource(LiveSource):
    """A local camera by index (``0``) or device (``/dev/video0``), through V4L2."""

    def __init__(self, device: str, *, config: StreamConfig) -> None:
        match = _DEVICE.match(device)
        self.device = f"/dev/video{match.group(1) if match else int(device)}"
        if not Path(self.device).exists():
            raise EdgevisionError(f"no camera {device} ({self.device} does not exist); check that it is plugged in.")
        super().__init__(device, config=config)

    def _open(self) -> cv2.VideoCapture | None:
        cap = cv2.VideoCapture(self.device, cv2.CAP_V4L2)
        if cap.isOpened():
            return cap
        cap.release()
        return None

    def _never_connected(self) -> EdgevisionError:
        return EdgevisionError(f"camera {self.device} exists but cannot be opened; is another program using it?")


def open_source(source: str, *, stream: StreamConfig | None = None, image_fps: float = 10.0) -> CaptureSource:
    """The capture source for a ``--source`` string; a clear error when it does not exist or open."""
    kind = source_kind(source)
    if kind == "camera":
        return CameraSource(source, config=stream or StreamConfig())
    if kind == "stream":
        return StreamSource(source, config=stream or StreamConfig())
    if kind == "video":
        return VideoFileSource(source)
    return ImageSource(source, fps=image_fps)
