"""Stable track ids across frames: ByteTrack (from ``supervision``) on detection or person boxes.

Poses are tracked through their boxes, so a skeleton keeps its id like a box does. A
track keeps one class: the one it was detected as most often so far (a tie keeps the
class already reported), so a person seen as a bicycle for a few frames stays a person.

ByteTrack counts a lost track's time in frames. Given each frame's ``time``, the tracker
turns ``lost_seconds`` into frames at the rate frames really arrive (the median gap of
the last ones), so a camera whose frames reach the model at 25, 10 or a varying rate
(dropped frames, a motion gate) keeps a lost track for the same time.

>>> tracker = Tracker(TrackerConfig(), fps=10.0)            # doctest: +SKIP
>>> tracked = tracker.update(predictor(frame.image))         # doctest: +SKIP
>>> tracked.tracker_ids                                      # doctest: +SKIP
array([1, 2, 3])
"""

from __future__ import annotations

import logging
import statistics
import warnings
from collections import deque
from dataclasses import dataclass

import numpy as np

from edgevision.errors import MissingExtraError
from edgevision.types import Detections, Poses, Prediction

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrackerConfig:
    """ByteTrack settings. ``lost_seconds``: how long a track survives unseen before its id retires."""

    activation_threshold: float = 0.3
    matching_threshold: float = 0.8
    lost_seconds: float = 2.0


def _byte_track(config: TrackerConfig, fps: float):
    try:
        import supervision as sv
    except ImportError:
        raise MissingExtraError("supervision", "pipeline") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # sv.ByteTrack announces its move to `trackers`
        return sv.ByteTrack(
            track_activation_threshold=config.activation_threshold,
            lost_track_buffer=max(1, round(config.lost_seconds * fps)),
            minimum_matching_threshold=config.matching_threshold,
            frame_rate=30,  # lost_track_buffer is already in frames of this source
        )


def boxes_of(prediction: Prediction) -> np.ndarray:
    """``(N, 4)`` boxes of a prediction: detection boxes or person boxes of poses."""
    if isinstance(prediction, Detections):
        return prediction.xyxy
    if isinstance(prediction, Poses):
        return prediction.boxes()
    return np.zeros((0, 4), dtype=np.float32)


def class_ids_of(prediction: Prediction) -> np.ndarray:
    return prediction.class_ids if isinstance(prediction, Detections) else np.zeros(len(prediction), dtype=np.int64)


class ClassVotes:
    """The majority class of each track over its life so far; a tie keeps the class already held.

    >>> votes = ClassVotes()
    >>> votes.vote(np.array([7, 7, 7]), np.array([0, 2, 2])).tolist()
    [0, 0, 2]
    """

    def __init__(self) -> None:
        self._counts: dict[int, dict[int, int]] = {}
        self._held: dict[int, int] = {}
        self._last_seen: dict[int, int] = {}

    def vote(self, track_ids: np.ndarray, class_ids: np.ndarray, *, frame: int = 0) -> np.ndarray:
        """Count one vote per object and return each object's track class, in order."""
        out = np.empty(len(track_ids), dtype=np.int64)
        for i, (track_id, class_id) in enumerate(zip(track_ids.tolist(), class_ids.tolist())):
            out[i] = self._vote_one(track_id, class_id)
            self._last_seen[track_id] = frame
        return out

    def _vote_one(self, track_id: int, class_id: int) -> int:
        counts = self._counts.setdefault(track_id, {})
        counts[class_id] = counts.get(class_id, 0) + 1
        held = self._held.setdefault(track_id, class_id)
        if counts[class_id] > counts[held]:
            self._held[track_id] = held = class_id
        return held

    def forget(self, *, before: int) -> None:
        """Drop the votes of tracks last seen before frame ``before``."""
        for track_id in [t for t, last in self._last_seen.items() if last < before]:
            del self._counts[track_id], self._held[track_id], self._last_seen[track_id]


class Tracker:
    """Gives each object a track id that stays the same while it stays in view.

    Objects the tracker does not keep (too weak to start a track) are dropped from the
    returned prediction; raw outputs pass through unchanged. Detections come back with the
    class of their track (see :class:`ClassVotes`).
    """

    def __init__(self, config: TrackerConfig, *, fps: float) -> None:
        self.config = config
        self._tracker = _byte_track(config, fps)
        self._votes = ClassVotes()
        self._frames = 0
        self._keep_frames = 10 * max(1, round(config.lost_seconds * fps))  # votes outlive a lost track
        self._gaps: deque[float] = deque(maxlen=25)  # seconds between the last frames
        self._last_time: float | None = None

    @property
    def lost_frames(self) -> int:
        """How many frames in a row a track may go unseen before its id retires."""
        return int(self._tracker.max_time_lost)

    def _pace(self, now: float) -> None:
        """Keep ``lost_seconds`` in frames at the rate frames arrive (a gap of 0 or less is a restart)."""
        if self._last_time is not None and now > self._last_time:
            self._gaps.append(now - self._last_time)
            # ByteTrack's max_time_lost is its public setting for this, in frames
            self._tracker.max_time_lost = max(1, round(self.config.lost_seconds / statistics.median(self._gaps)))
        self._last_time = now

    def update(self, prediction: Prediction, *, time: float | None = None) -> Prediction:
        """Track ``prediction``; ``time`` (seconds, any clock) is when its frame was taken."""
        if time is not None:
            self._pace(time)
        if not isinstance(prediction, Detections | Poses):
            return prediction
        import supervision as sv

        index = np.arange(len(prediction))
        foreign = sv.Detections(
            xyxy=boxes_of(prediction).astype(np.float32),
            confidence=prediction.scores.astype(np.float32),
            class_id=class_ids_of(prediction),
            data={"index": index},
        )
        tracked = self._tracker.update_with_detections(foreign)
        kept = prediction[np.asarray(tracked.data.get("index", []), dtype=np.int64)]
        kept.tracker_ids = np.asarray(tracked.tracker_id, dtype=np.int64)
        self._frames += 1
        if isinstance(kept, Detections):
            kept.class_ids = self._votes.vote(kept.tracker_ids, kept.class_ids, frame=self._frames)
        if self._frames % 100 == 0:
            self._votes.forget(before=self._frames - self._keep_frames)
        return kept
