"""Events (a track entered a zone, stayed, crossed a line) and the log that keeps them.

The log writes one JSON line per event and flushes it to disk at once, with a JPEG
snapshot of the frame in a folder beside it, so events already written survive a crash.

>>> log = EventLog("runs/cam/events.jsonl")           # doctest: +SKIP
>>> log.write(event, snapshot=annotated_frame)         # doctest: +SKIP
>>> log.close()                                        # doctest: +SKIP

A line of ``events.jsonl``::

    {"time": "2025-01-01T12:00:03.120+00:00", "video_time": 3.1, "frame": 31, "type": "enter",
     "zone": "lawn", "track_id": 7, "class": "person", "score": 0.71,
     "box": [412.3, 211.0, 447.9, 310.2], "snapshot": "events-snapshots/000001-enter-lawn-7.jpg"}
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from edgevision.errors import EdgevisionError
from edgevision.files import make_folders, remove_empty_folders
from edgevision.media import write_image
from edgevision.pipeline.tracking import boxes_of
from edgevision.types import Prediction

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """One rule firing for one track. ``zone`` names the zone or line; ``time`` is source seconds."""

    type: str  # "enter", "dwell" or "cross"
    zone: str
    track_id: int
    label: str
    frame: int
    time: float
    box: tuple[float, float, float, float]
    score: float
    direction: str | None = None  # "in" or "out" for line crossings
    dwell_seconds: float | None = None

    @classmethod
    def of(
        cls,
        kind: str,
        zone: str,
        prediction: Prediction,
        i: int,
        label: str,
        *,
        frame: int,
        time: float,
        direction: str | None = None,
    ) -> Event:
        """The event of object ``i`` of a tracked ``prediction``."""
        box = tuple(round(float(v), 1) for v in boxes_of(prediction)[i])
        track_id = int(prediction.tracker_ids[i])
        return cls(kind, zone, track_id, label, frame, time, box, float(prediction.scores[i]), direction)

    def with_dwell(self, seconds: float) -> Event:
        return dataclasses.replace(self, dwell_seconds=round(seconds, 2))

    def to_record(self) -> dict:
        """The JSON-ready dict of this event (the log adds wall-clock time and snapshot)."""
        record = {
            "video_time": round(self.time, 3),
            "frame": self.frame,
            "type": self.type,
            "zone": self.zone,
            "track_id": self.track_id,
            "class": self.label,
            "score": round(self.score, 4),
            "box": list(self.box),
        }
        if self.direction is not None:
            record["direction"] = self.direction
        if self.dwell_seconds is not None:
            record["dwell_seconds"] = self.dwell_seconds
        return record


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class EventLog:
    """Append-only JSON lines of events, each flushed to disk as it is written.

    Snapshots go to ``<stem>-snapshots/`` beside the log (``snapshots=False`` turns them off).
    """

    def __init__(self, path: str | Path, *, snapshots: bool = True) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise EdgevisionError(f"{path} is a folder; give a file for the events (e.g. events.jsonl).")
        self.made = make_folders(self.path.parent)  # folders created for the log
        self.snapshot_dir = self.path.parent / f"{self.path.stem}-snapshots" if snapshots else None
        self.count = 0
        self._file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - held for the run, closed in close()

    def write(self, event: Event, *, snapshot: np.ndarray | None = None) -> dict:
        """Write ``event`` (and its snapshot image) and return the record written."""
        self.count += 1
        record = {"time": _now_iso(), **event.to_record()}
        if snapshot is not None and self.snapshot_dir is not None:
            record["snapshot"] = self._save_snapshot(event, snapshot)
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        return record

    def _save_snapshot(self, event: Event, image: np.ndarray) -> str:
        self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        name = f"{self.count:06d}-{event.type}-{event.zone}-{event.track_id}.jpg"
        target = self.snapshot_dir / name
        write_image(target, image, (cv2.IMWRITE_JPEG_QUALITY, 85))
        return f"{self.snapshot_dir.name}/{name}"

    def close(self, *, keep: bool = True) -> None:
        """Close the log; without ``keep``, a log still empty is removed (the run never started)."""
        if not self._file.closed:
            self._file.close()
        if not keep and self.count == 0:
            self.path.unlink(missing_ok=True)
            remove_empty_folders(self.made)
