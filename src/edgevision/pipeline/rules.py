"""Rules that turn tracks into events: entering a zone, dwelling in it, crossing a line.

Zones and lines are checked against the bottom centre of each box (where a person stands).
Events are debounced:

* a track must be seen ``confirm_frames`` times before it can fire at all;
* a line is crossed only once the point is more than a margin beyond it (``margin`` of
  the box height, at least ``margin_pixels``) for ``settle_frames`` frames in a row;
  frames within the margin start the count again. So a person sitting on a line fires
  nothing, and a real crossing fires once;
* a zone is entered after ``settle_frames`` frames in a row inside it, and left after as
  many frames more than the margin outside it: a person standing on the border enters
  once and does not leave and come back with every jitter;
* the same track does not fire the same rule again within ``cooldown_seconds``.

This hysteresis is written here rather than taken from supervision: its ``LineZone``
counts frames on the new side but has no margin, and its ``PolygonZone`` has neither.

>>> engine = RuleEngine(zones=(zone,), lines=(), config=RuleConfig(), width=768, height=576)  # doctest: +SKIP
>>> events = engine.update(tracked, frame=12, time=1.2)                                    # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edgevision.errors import EdgevisionError
from edgevision.pipeline.events import Event
from edgevision.pipeline.tracking import boxes_of
from edgevision.pipeline.zones import Line, Zone, line_sides, zone_sides
from edgevision.types import Detections, Poses, Prediction

NONE = 0  # no side held yet, or a point within the margin
INSIDE, OUTSIDE = 1, -1  # of a zone, as zone_sides gives them
DIRECTION = {-1: "in", 1: "out"}  # of a line crossing to the side line_sides gives


@dataclass(frozen=True)
class RuleConfig:
    """Debouncing of every rule; see the module docstring."""

    confirm_frames: int = 3
    settle_frames: int = 3
    cooldown_seconds: float = 3.0
    margin: float = 0.1
    margin_pixels: float = 3.0

    def __post_init__(self) -> None:
        counts = {"confirm_frames": self.confirm_frames, "settle_frames": self.settle_frames}
        sizes = {"cooldown_seconds": self.cooldown_seconds, "margin": self.margin, "margin_pixels": self.margin_pixels}
        bad = [f"{k} must be 1 or more, got {v}" for k, v in counts.items() if v < 1]
        bad += [f"{k} must be 0 or more, got {v}" for k, v in sizes.items() if not (math.isfinite(v) and v >= 0)]
        if bad:
            raise EdgevisionError(f"rule settings: {bad[0]}.")


@dataclass
class _Side:
    """The side of a line or zone border one track holds, with the run towards the other side."""

    held: int = NONE
    candidate: int = NONE
    streak: int = 0

    def observe(self, side: int, *, frames: int) -> bool:
        """True when ``side`` becomes the held side: seen beyond the margin ``frames`` times in a row."""
        if side in (NONE, self.held):
            self.candidate, self.streak = NONE, 0
            return False
        self.streak = self.streak + 1 if side == self.candidate else 1
        self.candidate = side
        if self.streak < frames:
            return False
        self.held, self.candidate, self.streak = side, NONE, 0
        return True


@dataclass
class _Stay:
    """One track's state in one zone."""

    side: _Side = field(default_factory=lambda: _Side(held=OUTSIDE))  # a track starts outside
    since: float = 0.0  # when the current stay began
    entered: bool = False  # the enter event of this stay has fired
    dwelled: bool = False

    @property
    def inside(self) -> bool:
        return self.side.held == INSIDE


@dataclass
class _Seen:
    hits: int = 0
    last_frame: int = 0
    fired: dict[tuple[str, str], float] = field(default_factory=dict)  # (rule, type) -> time


def anchors_and_margins(prediction: Prediction, config: RuleConfig) -> tuple[np.ndarray, np.ndarray]:
    """Bottom centres ``(N, 2)`` of the boxes and each one's margin in pixels."""
    boxes = boxes_of(prediction).astype(np.float64).reshape(-1, 4)
    anchors = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, boxes[:, 3]], axis=1)
    margins = np.maximum(config.margin * (boxes[:, 3] - boxes[:, 1]), config.margin_pixels)
    return anchors, margins


def labels_of(prediction: Prediction) -> list[str]:
    """The class name of each object (every pose is a person)."""
    if isinstance(prediction, Detections):
        return [prediction.label(i) for i in range(len(prediction))]
    return ["person"] * len(prediction) if isinstance(prediction, Poses) else []


class RuleEngine:
    """Zones and lines of one run, resolved to pixels of a ``width`` x ``height`` frame."""

    def __init__(
        self, *, zones: tuple[Zone, ...], lines: tuple[Line, ...], config: RuleConfig, width: int, height: int
    ) -> None:
        self.config = config
        self.zones = zones
        self.lines = lines
        self._polygons = [z.pixels(width=width, height=height) for z in zones]
        self._segments = [ln.pixels(width=width, height=height) for ln in lines]
        self._stays: dict[tuple[str, int], _Stay] = {}
        self._sides: dict[tuple[str, int], _Side] = {}  # (line, track) -> side held
        self._seen: dict[int, _Seen] = {}
        self.occupancy: dict[str, int] = {z.name: 0 for z in zones}
        self.crossings: dict[str, dict[str, int]] = {ln.name: {"in": 0, "out": 0} for ln in lines}

    def update(self, prediction: Prediction, *, frame: int, time: float) -> list[Event]:
        """Events fired by this frame's tracked objects, in order."""
        if getattr(prediction, "tracker_ids", None) is None or not (self.zones or self.lines):
            return []
        self._count_hits(prediction, frame)
        anchors, margins = anchors_and_margins(prediction, self.config)
        labels = labels_of(prediction)
        events: list[Event] = []
        for zone, polygon in zip(self.zones, self._polygons):
            sides = self._zone_sides(zone.name, polygon, prediction.tracker_ids, anchors, margins)
            events += self._zone_events(zone, sides, prediction, labels, frame, time)
        for line, segment in zip(self.lines, self._segments):
            sides = line_sides(segment, anchors, margins=margins)
            events += self._line_events(line, sides, prediction, labels, frame, time)
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

    def _zone_sides(self, zone: str, polygon, track_ids: np.ndarray, anchors, margins: np.ndarray) -> np.ndarray:
        """Sides against ``zone``'s border: no margin to enter it, the margin to leave it."""
        inside = np.array([(zone, t) in self._stays and self._stays[zone, t].inside for t in track_ids.tolist()], bool)
        return zone_sides(polygon, anchors, margins=np.where(inside, margins, 0.0))

    def _zone_events(self, zone, sides, prediction, labels, frame, time) -> list[Event]:
        events = []
        for i, track_id in enumerate(prediction.tracker_ids.tolist()):
            stay = self._settle(zone.name, track_id, int(sides[i]), time)
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
        return sum(
            1 for t in track_ids if (zone, t) in self._stays and self._stays[zone, t].inside and self.confirmed(t)
        )

    def _settle(self, zone: str, track_id: int, side: int, time: float) -> _Stay:
        """Update the debounced inside/outside state of ``track_id`` in ``zone``."""
        stay = self._stays.setdefault((zone, track_id), _Stay())
        if stay.side.observe(side, frames=self.config.settle_frames):
            stay.since = time
            stay.entered = stay.dwelled = False
        return stay

    def _crossed(self, line: str, track_id: int, side: int) -> str | None:
        """``"in"`` or ``"out"`` when the track now holds the other side of ``line`` than it held before."""
        state = self._sides.setdefault((line, track_id), _Side())
        before = state.held
        if not state.observe(side, frames=self.config.settle_frames) or before == NONE:
            return None  # the first side held is where the track starts, not a crossing
        return DIRECTION[state.held]

    def _line_events(self, line, sides, prediction, labels, frame, time) -> list[Event]:
        events = []
        for i, track_id in enumerate(prediction.tracker_ids.tolist()):
            direction = self._crossed(line.name, track_id, int(sides[i]))
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
        self._sides = {k: v for k, v in self._sides.items() if k[1] not in stale}
