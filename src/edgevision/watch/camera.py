"""One watched camera: a capture thread keeping its freshest frame, its motion gate, state and counters.

The thread reads frames as they come (files at their own frame rate, so they behave like a
camera), passes each through the motion gate and keeps only the newest frame worth the
model; one the model had no time for is counted as dropped. With ``paced=False`` a file is
read as fast as the model takes its frames instead, none dropped, on the file's own clock:
every frame of a recording is processed and the result does not depend on the machine's speed. Any failure (a stream lost, a
file gone) is retried with exponential back-off on this thread alone, so the other
cameras never notice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace

import cv2

from edgevision.errors import EdgevisionError
from edgevision.pipeline.capture import CaptureSource, StreamConfig, open_source
from edgevision.types import Frame
from edgevision.watch.clips import ClipRecorder, Deliver
from edgevision.watch.config import CameraConfig
from edgevision.watch.motion import MotionGate

logger = logging.getLogger(__name__)

STATES = ("starting", "running", "reconnecting", "stopped")
BACKOFF_INITIAL, BACKOFF_MAX = 0.5, 30.0
# give_up_after=0: a lost stream raises at once, and this module's back-off takes over,
# so every failure (lost, never connected, file gone) takes one path and shows as "reconnecting".
STREAM = StreamConfig(connect_timeout=4.0, read_timeout=4.0, give_up_after=0.0)
_FAILURES = (EdgevisionError, OSError, cv2.error)


class Camera:
    """Camera ``name`` of the config; ``on_ready`` is called when a frame waits for the model.

    ``paced=False``: a video file is read as fast as the model takes its frames (see above).
    """

    def __init__(
        self,
        name: str,
        config: CameraConfig,
        *,
        on_ready: Callable[[], None],
        deliver: Deliver,
        paced: bool = True,
    ) -> None:
        self.name = name
        self.config = config
        self.paced = paced
        self.state = "starting"
        self.gate = MotionGate(config.motion)
        self.captured = self.inferred = self.dropped = 0
        self.fps = 0.0  # of the source, once opened
        self.clips: ClipRecorder | None = None
        self._deliver = deliver
        self._on_ready = on_ready
        self._pending: Frame | None = None
        self._latest: Frame | None = None
        self._times: deque[float] = deque(maxlen=100)  # capture moments, for the recent fps
        self._lock = threading.Lock()
        self._taken = threading.Condition(self._lock)  # an unpaced file waits on it for the model
        self._stop = threading.Event()
        self._source: CaptureSource | None = None
        self._thread = threading.Thread(target=self._run, name=f"watch-{name}", daemon=True)

    # -- the inference thread's side --------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._pending is not None

    def take(self) -> Frame | None:
        """The freshest frame worth the model, once (None when there is none)."""
        with self._lock:
            frame, self._pending = self._pending, None
            self._taken.notify_all()
        return frame

    def latest(self) -> Frame | None:
        """The last frame captured, whatever the gate said."""
        return self._latest

    def recent_fps(self) -> float:
        times = list(self._times)
        if len(times) < 2 or time.perf_counter() - times[-1] > 2.0:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    # -- life --------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end; ``join`` waits for it."""
        self._stop.set()
        source = self._source
        if source is not None and hasattr(source, "stop"):
            source.stop()  # a live source waiting to reconnect gives up at once

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        if self.clips is not None:
            self.clips.flush()

    def _set_state(self, state: str, why: str = "") -> None:
        if state != self.state:
            self.state = state
            logger.info("camera %s: %s%s", self.name, state, f" ({why})" if why else "")

    def _run(self) -> None:
        delay = BACKOFF_INITIAL
        while not self._stop.is_set():
            try:
                captured = self.captured
                if self._capture():
                    break  # a file without loop came to its end
            except _FAILURES as exc:
                delay = BACKOFF_INITIAL if self.captured > captured else delay
                self._set_state("reconnecting", f"{str(exc).rstrip('.')}; retrying in {delay:g} s")
                if self._stop.wait(delay):
                    break
                delay = min(delay * 2, BACKOFF_MAX)
        self._set_state("stopped")

    def _open(self) -> CaptureSource:
        self._source = open_source(self.config.source_path(), stream=STREAM)
        self.fps = self._source.fps
        if self.clips is None:
            self.clips = ClipRecorder(fps=self.fps, deliver=self._deliver)
        return self._source

    def _capture(self) -> bool:
        """Read frames until stopped (False) or a file's end without loop (True); raises on failure."""
        source = self._open()
        try:
            start = last = time.perf_counter()
            while not self._stop.is_set():
                frame = source.read()
                if frame is None and self.config.loop and not self._stop.is_set():
                    source.close()
                    # an unpaced file runs ahead of the clock: its next round starts after its last frame
                    source, start = self._open(), max(time.perf_counter(), last + 1.0 / self.fps)
                    continue
                if frame is None:
                    return not self._stop.is_set()
                if not source.live:
                    frame = self._on_file_clock(frame, start)
                last = frame.captured
                self._accept(frame, wait=not (source.live or self.paced))
            return False
        finally:
            source.close()

    def _on_file_clock(self, frame: Frame, start: float) -> Frame:
        """A file's frame at its moment in the file: played at that rate when paced, else only stamped so."""
        if self.paced:  # a file plays at its own frame rate, like a camera
            self._stop.wait(max(0.0, start + frame.time - time.perf_counter()))
            return frame
        # keyframes, tracks and dwell times then count the file's seconds, not the machine's
        return replace(frame, captured=start + frame.time)

    def _accept(self, frame: Frame, *, wait: bool = False) -> None:
        """Gate ``frame``; one worth the model waits for it (the freshest wins); ``wait``: until taken."""
        self._set_state("running")
        self.captured += 1
        self._times.append(time.perf_counter())
        self.clips.add(frame.image)
        worth = self.gate.check(frame.image, now=frame.captured)
        with self._lock:
            self._latest = frame
            if worth:
                self.dropped += self._pending is not None
                self._pending = frame
        if worth:
            self._on_ready()
        if worth and wait:
            self._wait_taken()

    def _wait_taken(self) -> None:
        with self._taken:
            while self._pending is not None and not self._stop.is_set():
                self._taken.wait(0.1)  # stop() does not notify: look at it now and then
