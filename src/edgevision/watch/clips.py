"""Event clips: the last seconds of a camera kept in memory, and a thread that writes clips to the store.

A clip is the ~2 s before an event and the ~2 s after it. Frames are kept at most
``MAX_FPS`` a second and ``MAX_WIDTH`` wide, so a 1080p camera holds ~30 MB, not ~300 MB.
An event that comes while a clip of its camera is still open joins that clip, which then
runs on to ~2 s after the newest of its events (up to ``MAX_CLIP_S``): events a second apart
share most of their frames, and one clip for all of them is encoded once instead of once per
event. Each event knows where in the clip it happened (``FinishedClip.offsets``).
Clips are encoded on the writer's own thread: the model never waits for an mp4. When
events come faster than the machine encodes H.264 (a busy scene: about 0.5 s of a core per
clip here), the clips waiting would hold ever more frames in memory; from ``BACKLOG`` clips
waiting on, they are written in the fast codec (``mp4v``: kept, downloadable, but not played
by browsers) until the writer has caught up. When the service stops, the writer gets a
quarter of its time to finish as usual; then it hurries: the clips still to write (the one
being encoded too) are written in the fast codec by one writer per core, so they are kept
rather than dropped.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from edgevision.checks import usable_cores
from edgevision.errors import EdgevisionError

logger = logging.getLogger(__name__)

MAX_FPS = 10.0
MAX_WIDTH = 960
# Clips waiting to be written from which the writer takes the fast codec. A 960-wide clip of
# 4 s at 10 fps holds about 60 MB of frames (shared in part with its neighbours).
BACKLOG = 8
# The longest clip events join (seconds): later events start a clip of their own, so a scene
# that never calms down does not hold one clip's frames in memory for ever.
MAX_CLIP_S = 12.0
_FAST = threading.Event()  # always set: the ``hurry`` of a clip written while the writer is behind
_FAST.set()


@dataclass(frozen=True)
class FinishedClip:
    """The frames of one clip and the events it shows, each at its second in the clip."""

    event_ids: tuple[int, ...]
    offsets: tuple[float, ...]  # seconds from the clip's start to each event
    frames: list[np.ndarray]
    fps: float


Deliver = Callable[[FinishedClip], None]


@dataclass
class _Clip:
    event_ids: list[int]
    offsets: list[float]
    frames: list[np.ndarray]
    left: int  # frames still to come after the newest event


class ClipRecorder:
    """The recent frames of one camera; ``start(event_id)`` opens a clip that ``deliver`` gets when full."""

    def __init__(self, *, fps: float, deliver: Deliver, before_s: float = 2.0, after_s: float = 2.0) -> None:
        self.every = max(1, round(fps / MAX_FPS))  # keep every n-th frame
        self.fps = fps / self.every
        self._ring: deque[np.ndarray] = deque(maxlen=max(1, round(before_s * self.fps)))
        self._after = max(1, round(after_s * self.fps))
        self._longest = max(len(self._ring) + self._after, round(MAX_CLIP_S * self.fps))  # frames
        self._open: list[_Clip] = []
        self._seen = 0
        self._deliver = deliver
        self._lock = threading.Lock()

    def add(self, image: np.ndarray) -> None:
        """Keep ``image`` (every n-th one) for clips to come and for the clips still open."""
        self._seen += 1
        if (self._seen - 1) % self.every:
            return
        small = _shrunk(image)
        with self._lock:
            self._ring.append(small)
            for clip in self._open:
                clip.frames.append(small)
                clip.left -= 1
            done = [c for c in self._open if c.left <= 0]
            self._open = [c for c in self._open if c.left > 0]
        for clip in done:
            self._send(clip)

    def start(self, event_id: int) -> None:
        """Event ``event_id`` joins the open clip that has room for ~2 s more, or opens one with the frames before it."""
        with self._lock:
            clip = self._open[-1] if self._open else None
            if clip is not None and len(clip.frames) + self._after <= self._longest:
                clip.event_ids.append(event_id)
                clip.offsets.append(self._position(len(clip.frames)))
                clip.left = self._after
            else:
                self._open.append(_Clip([event_id], [self._position(len(self._ring))], list(self._ring), self._after))

    def _position(self, frames: int) -> float:
        """Seconds from a clip's first frame to its newest of ``frames``."""
        return round(max(0, frames - 1) / self.fps, 2)

    def flush(self) -> None:
        """Deliver every open clip with the frames it has (the camera is stopping)."""
        with self._lock:
            done, self._open = self._open, []
        for clip in done:
            self._send(clip)

    def _send(self, clip: _Clip) -> None:
        size = clip.frames[-1].shape if clip.frames else None
        start = next((i for i, f in enumerate(clip.frames) if f.shape == size), 0)
        frames = [f for f in clip.frames[start:] if f.shape == size]  # a reconnect may change the size
        if frames:
            offsets = tuple(max(0.0, round(t - start / self.fps, 2)) for t in clip.offsets)
            self._deliver(FinishedClip(tuple(clip.event_ids), offsets, frames, self.fps))


def events_named(event_ids: tuple[int, ...]) -> str:
    """``event 7`` or ``events 7, 8``, for log lines."""
    return f"event{'s' if len(event_ids) > 1 else ''} {', '.join(map(str, event_ids))}"


def _shrunk(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    if w <= MAX_WIDTH:
        return image
    return cv2.resize(image, (MAX_WIDTH, round(h * MAX_WIDTH / w)), interpolation=cv2.INTER_AREA)


class ClipWriter:
    """One thread writing clips with ``write(clip, hurry=event)``, in the order they come."""

    def __init__(self, write: Callable[..., object]) -> None:
        self._write = write
        self.hurry = threading.Event()  # set while stopping: write in the fast codec
        self._behind = False  # True from BACKLOG clips waiting until half of it: the fast codec too
        self.fell_behind = 0  # times the writer fell BACKLOG clips behind
        self.written = 0  # clips written
        self.hurried = 0  # of them, written in the fast codec (the writer behind, or the service stopping)
        self._count = threading.Lock()
        self._queue: queue.Queue = queue.Queue()
        self._threads = [threading.Thread(target=self._loop, name="watch-clips", daemon=True)]
        self._threads[0].start()

    def put(self, clip: FinishedClip) -> None:
        self._queue.put(clip)

    @property
    def waiting(self) -> int:
        """Clips handed over and not yet taken by a writer."""
        return self._queue.qsize()

    def _loop(self) -> None:
        while (clip := self._queue.get()) is not None:
            self._keep_up()
            hurry = _FAST if self._behind else self.hurry
            try:
                self._write(clip, hurry=hurry)
            except (EdgevisionError, OSError, cv2.error) as exc:
                logger.warning("the clip of %s was not kept: %s", events_named(clip.event_ids), exc)
                continue
            with self._count:
                self.written += 1
                self.hurried += hurry.is_set()
        self._queue.put(None)  # the end marker stays for the other writers

    def _keep_up(self) -> None:
        """Fall behind at ``BACKLOG`` clips waiting (the fast codec), catch up at half of it."""
        waiting = self._queue.qsize()
        if waiting >= BACKLOG and not self._behind:
            self._behind = True
            self.fell_behind += 1
            logger.log(
                logging.WARNING if self.fell_behind == 1 else logging.INFO,  # a busy scene does it again and again
                "clips: %d waiting, events come faster than H.264 is encoded here; "
                "writing mp4v (kept, not played by browsers) until the writer catches up",
                waiting,
            )
        elif waiting <= BACKLOG // 2 and self._behind:
            self._behind = False
            logger.info("clips: caught up; writing H.264 again")

    def close(self, *, timeout: float) -> None:
        """Write the clips queued so far (waiting at most ``timeout`` s), then end the threads.

        After a quarter of ``timeout`` the writer hurries (see the module's docstring), with one
        more writer thread per core: OpenCV encodes without holding the interpreter lock."""
        deadline = time.monotonic() + timeout
        self._queue.put(None)
        self._threads[0].join(timeout / 4)
        if self._threads[0].is_alive():
            logger.info("clips: still writing as the service stops; the rest go in the fast codec (mp4v)")
            self.hurry.set()
            for index in range(usable_cores()):
                helper = threading.Thread(target=self._loop, name=f"watch-clips-{index + 2}", daemon=True)
                helper.start()
                self._threads.append(helper)
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in self._threads):
            logger.warning("stopped before every clip was written; those events keep their snapshots")
