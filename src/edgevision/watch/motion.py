"""The motion gate of one camera: is a frame worth running the model on?

A frame is shrunk to a small grey image and compared with a running-average background
(``cv2.accumulateWeighted``). That is chosen over MOG2 because it costs one blur, one
difference and one threshold per frame with no model of pixel distributions to learn or
warm up, and over plain frame-to-frame differencing because a slow walker, who changes
little between two frames at 25 fps, still stands out against a background a second old.
A keyframe every ``keyframe_s`` seconds goes through whatever the gate says, so tracks,
dwell times and the latest picture stay current in a still scene.

>>> gate = MotionGate(MotionConfig())
>>> gate.check(np.zeros((480, 640, 3), np.uint8), now=0.0)  # the first frame is a keyframe
True
"""

from __future__ import annotations

from collections import deque

import cv2
import numpy as np

from edgevision.watch.config import MotionConfig

WIDTH = 160  # of the grey image compared: enough for a person at 10 m, ~1% of a 640-wide frame's pixels
ADAPT = 0.05  # background learning rate per frame: a parked car becomes background in a few seconds


class MotionGate:
    """Says per frame whether it moved against the background, or is due as a keyframe."""

    def __init__(self, config: MotionConfig, *, window: int = 100) -> None:
        self.config = config
        self._background: np.ndarray | None = None
        self._last_key: float | None = None
        self._recent: deque[bool] = deque(maxlen=window)  # moved or not, for motion_fraction

    def check(self, image: np.ndarray, *, now: float) -> bool:
        """True when ``image`` (BGR, captured at ``now`` seconds) should go to the model."""
        moved = self.moved(image) if self.config.enabled else True
        self._recent.append(moved)
        if moved or self._keyframe_due(now):
            self._last_key = now  # any frame the model sees restarts the keyframe clock
            return True
        return False

    def _keyframe_due(self, now: float) -> bool:
        return self._last_key is None or now - self._last_key >= self.config.keyframe_s

    def moved(self, image: np.ndarray) -> bool:
        """True when enough of ``image`` differs from the background; the background learns it."""
        grey = _small_grey(image)
        if self._background is None or self._background.shape != grey.shape:
            self._background = grey.astype(np.float32)
            return True  # nothing to compare with yet: let the model look
        diff = cv2.absdiff(grey, cv2.convertScaleAbs(self._background))
        changed = np.count_nonzero(diff >= self.config.threshold) / diff.size
        cv2.accumulateWeighted(grey, self._background, ADAPT)
        return changed >= self.config.min_area

    @property
    def motion_fraction(self) -> float:
        """The fraction of recent frames that moved (0 when none seen yet)."""
        return sum(self._recent) / len(self._recent) if self._recent else 0.0


def _small_grey(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    size = (WIDTH, max(1, round(h * WIDTH / w)))
    grey = cv2.cvtColor(cv2.resize(image, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
    return cv2.GaussianBlur(grey, (5, 5), 0)  # sensor noise and JPEG blocks are not motion
