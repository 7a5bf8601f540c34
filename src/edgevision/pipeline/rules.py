"""Rules that turn tracks into events: entering a zone, dwelling in it, crossing a line.

Membership and crossings come from supervision's ``PolygonZone`` and ``LineZone`` on the
bottom centre of each box (where a person stands). Events are debounced:

* a track must be seen ``confirm_frames`` times before it can fire at all;
* a zone entry (or exit) counts only after ``settle_frames`` frames in a row on the new side,
  so a box jittering on the border does not flip the state;
* the same track does not fire the same rule again within ``cooldown_seconds``.

>>> engine = RuleEngine(zones=(zone,), lines=(), config=RuleConfig(), width=768, height=576)  # doctest: +SKIP
>>> events = engine.update(tracked, frame=12, time=1.2)                                    # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgevision.errors import MissingExtraError
from edgevision.pipeline.events import Event
from edgevision.pipeline.tracking import boxes_of, class_ids_of
from edgevision.pipeline.zones import Line, Zone
from edgevision.types import Detections, Poses, Prediction


@dataclass(frozen=True)
class RuleConfig:
    """Debouncing of every rule; see the module docstring."""

    confirm_frames: int = 3
    settle_frames: int = 3
    cooldown_seconds: float = 3.0


@dataclass
class _Stay:
    """One track's state in one zone."""

    inside: bool = False
    streak: int = 0  # frames in a row seen on the other side of ``inside``
    since: float = 0.0  # when the current stay began
    entered: bool = False  # the enter event of this stay has fired
    dwelled: bool = False


@dataclass
class _Seen:
    hits: int = 0
    last_frame: int = 0
    fired: dict[tuple[str, str], float] = field(default_factory=dict)  # (rule, type) -> time


def _supervision():
    try:
        import supervision as sv
    except ImportError:
        raise MissingExtraError("supervision", "pipeline") from None
    return sv


def to_supervision(prediction: Prediction):
    """``supervision.Detections`` of a tracked prediction (boxes, scores, classes, track ids)."""
    sv = _supervision()
    tracker_ids = getattr(prediction, "tracker_ids", None)
    return sv.Detections(
        xyxy=boxes_of(prediction).astype(np.float32).reshape(-1, 4),
        confidence=np.asarray(getattr(prediction, "scores", np.zeros(0)), np.float32),
        class_id=class_ids_of(prediction),
        tracker_id=None if tracker_ids is None else np.asarray(tracker_ids, np.int64),
    )


def _labels(prediction: Prediction) -> list[str]:
    if isinstance(prediction, Detections):
        return [prediction.label(i) for i in range(len(prediction))]
    return ["person"] * len(prediction) if isinstance(prediction, Poses) else []


class RuleEngine:
    """Zones and lines of one run, resolved to pixels of a ``width`` x ``height`` frame."""

    def __init__(
        self, *, zones: tuple[Zone, ...], lines: tuple[Line, ...], config: RuleConfig, width: int, height: int
    ) -> None:
        sv = _supervision()
        anchor = [sv.Position.BOTTOM_CENTER]
        self.config = config
        self.zones = zones
        self.lines = lines
        self._zones = [sv.PolygonZone(z.pixels(width=width, height=height), triggering_anchors=anchor) for z in zones]
        self._lines = [
            sv.LineZone(
                sv.Point(*map(int, p[0])),
                sv.Point(*map(int, p[1])),
                triggering_anchors=anchor,
                minimum_crossing_threshold=config.settle_frames,
            )
            for p in (ln.pixels(width=width, height=height) for ln in lines)
        ]
        self._stays: dict[tuple[str, int], _Stay] = {}
        self._seen: dict[int, _Seen] = {}
        self.occupancy: dict[str, int] = {z.name: 0 for z in zones}
        self.crossings: dict[str, dict[str, int]] = {ln.name: {"in": 0, "out": 0} for ln in lines}

    def update(self, prediction: Prediction, *, frame: int, time: float) -> list[Event]:
        """Events fired by this frame's tracked objects, in order."""
        if getattr(prediction, "tracker_ids", None) is None or not (self.zones or self.lines):
            return []
        self._count_hits(prediction, frame)
        detections = to_supervision(prediction)
        labels = _labels(prediction)
        events: list[Event] = []
        for zone, polygon in zip(self.zones, self._zones):
            events += self._zone_events(zone, polygon.trigger(detections), prediction, labels, frame, time)
        for line, counter in zip(self.lines, self._lines):
            crossed_in, crossed_out = counter.trigger(detections)
            events += self._line_events(line, crossed_in, crossed_out, prediction, labels, frame, time)
        self._forget_old(frame)
        return events

    def _count_hits(self, prediction: Prediction, frame: int) -> None:
        for track_id in prediction.tracker_ids.tolist():
            seen = self._seen.setdefault(track_id, _Seen())
            seen.hits += 1
            seen.last_frame = frame

    def confirmed(self, track_id: int) -> bool:
        seen = self._seen.get(track_id)
        return seen is not None and seen.hits >= self.config.confirm_frames

    def _cooled(self, track_id: int, key: tuple[str, str], time: float) -> bool:
        """True (and the firing recorded) when ``key`` has not fired for this track recently."""
        fired = self._seen[track_id].fired
        if key in fired and time - fired[key] < self.config.cooldown_seconds:
            return False
        fired[key] = time
        return True

    def _zone_events(self, zone, inside, prediction, labels, frame, time) -> list[Event]:
        events = []
        for i, track_id in enumerate(prediction.tracker_ids.tolist()):
            stay = self._settle(zone.name, track_id, bool(inside[i]), time)
            if not stay.inside or not self.confirmed(track_id) or not self._wanted(zone.classes, labels[i]):
                continue
            if not stay.entered:
                stay.entered = True  # a re-entry within the cooldown is part of the same visit
                if self._cooled(track_id, (zone.name, "enter"), time):
                    events.append(Event.of("enter", zone.name, prediction, i, labels[i], frame=frame, time=time))
            if zone.dwell_seconds is not None and not stay.dwelled and time - stay.since >= zone.dwell_seconds:
                stay.dwelled = True
                event = Event.of("dwell", zone.name, prediction, i, labels[i], frame=frame, time=time)
                events.append(event.with_dwell(time - stay.since))
        self.occupancy[zone.name] = self._occupants(zone.name, prediction.tracker_ids.tolist())
        return events

    def _occupants(self, zone: str, track_ids: list[int]) -> int:
        return sum(1 for t in track_ids if self._stays.get((zone, t), _Stay()).inside and self.confirmed(t))

    def _settle(self, zone: str, track_id: int, inside_now: bool, time: float) -> _Stay:
        """Update the debounced inside/outside state of ``track_id`` in ``zone``."""
        stay = self._stays.setdefault((zone, track_id), _Stay())
        if inside_now == stay.inside:
            stay.streak = 0
            return stay
        stay.streak += 1
        if stay.streak >= self.config.settle_frames:
            stay.inside, stay.streak, stay.since = inside_now, 0, time
            stay.entered = stay.dwelled = False
        return stay

    def _line_events(self, line, crossed_in, crossed_out, prediction, labels, frame, time) -> list[Event]:
        events = []
        for i, track_id in enumerate(prediction.tracker_ids.tolist()):
            direction = "in" if crossed_in[i] else "out" if crossed_out[i] else None
            if direction is None or not self.confirmed(track_id) or not self._wanted(line.classes, labels[i]):
                continue
            if line.direction not in ("both", direction) or not self._cooled(track_id, (line.name, direction), time):
                continue
            self.crossings[line.name][direction] += 1
            events.append(
                Event.of("cross", line.name, prediction, i, labels[i], frame=frame, time=time, direction=direction)
            )
        return events

    @staticmethod
    def _wanted(classes: tuple[str, ...] | None, label: str) -> bool:
        return classes is None or label in classes

    def _forget_old(self, frame: int, *, keep_frames: int = 600) -> None:
        """Drop the state of tracks unseen for ``keep_frames`` frames (ids are never reused)."""
        if frame % 100:
            return
        stale = {t for t, s in self._seen.items() if frame - s.last_frame > keep_frames}
        for track_id in stale:
            del self._seen[track_id]
        self._stays = {k: v for k, v in self._stays.items() if k[1] not in stale}
