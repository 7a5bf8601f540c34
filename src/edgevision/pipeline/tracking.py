"""Stable track ids across frames: ByteTrack (from ``supervision``) on detection or person boxes.

Poses are tracked through their boxes, so a skeleton keeps its id like a box does.

>>> tracker = Tracker(TrackerConfig(), fps=10.0)            # doctest: +SKIP
>>> tracked = tracker.update(predictor(frame.image))         # doctest: +SKIP
>>> tracked.tracker_ids                                      # doctest: +SKIP
array([1, 2, 3])
"""

from __future__ import annotations

import logging
import warnings
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


class Tracker:
    """Gives each object a track id that stays the same while it stays in view.

    Objects the tracker does not keep (too weak to start a track) are dropped from the
    returned prediction; raw outputs pass through unchanged.
    """

    def __init__(self, config: TrackerConfig, *, fps: float) -> None:
        self.config = config
        self._tracker = _byte_track(config, fps)

    def update(self, prediction: Prediction) -> Prediction:
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
        return kept
