"""Polygon zones and counting lines: typed definitions, parsing and checks against the frame.

Coordinates are pixels of the source frame, or fractions of its width and height when
every value lies in ``[0, 1]``.

>>> zone = parse_zone("door:0.1,0.5,0.4,0.5,0.4,0.9")
>>> zone.name, len(zone.points), zone.normalised
('door', 3, True)
>>> zone.pixels(width=200, height=100).tolist()
[[20, 50], [80, 50], [80, 90]]
>>> parse_line("gate:0,300,768,300:in").direction
'in'
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from edgevision.errors import EdgevisionError

Direction = Literal["in", "out", "both"]
DIRECTIONS: tuple[str, ...] = ("in", "out", "both")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def _is_normalised(points: tuple[tuple[float, float], ...]) -> bool:
    return all(0.0 <= v <= 1.0 for point in points for v in point)


def _to_pixels(kind: str, name: str, points: tuple[tuple[float, float], ...], width: int, height: int) -> np.ndarray:
    """``points`` in whole frame pixels; a clear error when one lies outside the frame."""
    array = np.asarray(points, dtype=np.float64)
    if _is_normalised(points):
        array = array * [width, height]
    pixels = np.round(array)
    outside = (pixels[:, 0] < 0) | (pixels[:, 0] > width) | (pixels[:, 1] < 0) | (pixels[:, 1] > height)
    if outside.any():
        x, y = pixels[np.argmax(outside)]
        raise EdgevisionError(
            f"{kind} {name} has point ({x:g}, {y:g}) outside the {width}x{height} frame; "
            "give pixels inside the frame or fractions between 0 and 1."
        )
    return pixels.astype(np.int64)


def _area(points: tuple[tuple[float, float], ...]) -> float:
    """The polygon's area (shoelace formula) after scaling its points into [-1, 1] (so huge values cannot overflow)."""
    array = np.asarray(points, dtype=np.float64)
    x, y = (array / max(float(np.abs(array).max()), 1.0)).T
    return abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) / 2


@dataclass(frozen=True)
class Zone:
    """A named polygon; people (or ``classes``) entering it, or staying ``dwell_seconds``, fire events.

    ``classes=None`` takes the run's classes.
    """

    name: str
    points: tuple[tuple[float, float], ...]
    dwell_seconds: float | None = None
    classes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.points) < 3:
            raise EdgevisionError(f"zone {self.name} needs at least 3 points (x,y pairs), got {len(self.points)}.")
        if not _area(self.points) > 0:
            raise EdgevisionError(f"zone {self.name} has no area; give at least 3 points that are not on one line.")

    @property
    def normalised(self) -> bool:
        return _is_normalised(self.points)

    def pixels(self, *, width: int, height: int) -> np.ndarray:
        """The polygon in frame pixels, ``(N, 2)`` int64; a clear error when a point is outside the frame."""
        return _to_pixels("zone", self.name, self.points, width, height)


@dataclass(frozen=True)
class Line:
    """A named counting line from ``start`` to ``end``; crossings fire events.

    ``direction="in"`` fires when an object crosses to the left-hand side of the line as
    seen walking from ``start`` to ``end`` on screen (for a line drawn left to right: moving
    up the image), ``"out"`` the opposite way, ``"both"`` either way.
    """

    name: str
    start: tuple[float, float]
    end: tuple[float, float]
    direction: Direction = "both"
    classes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise EdgevisionError(
                f"line {self.name} direction must be one of {', '.join(DIRECTIONS)}, got {self.direction}."
            )
        if self.start == self.end:
            raise EdgevisionError(f"line {self.name} starts and ends at the same point; give two different points.")

    def pixels(self, *, width: int, height: int) -> np.ndarray:
        """``[[x1, y1], [x2, y2]]`` in frame pixels; a clear error when a point is outside the frame."""
        return _to_pixels("line", self.name, (self.start, self.end), width, height)


def _split_spec(kind: str, text: str) -> tuple[str, list[str]]:
    name, sep, rest = text.partition(":")
    if not sep or not _NAME.fullmatch(name):
        raise EdgevisionError(
            f"{kind} '{text}' must look like NAME:x1,y1,x2,y2,... (NAME of letters, digits, '_', '-' or '.')."
        )
    return name, rest.split(":")


def _numbers(kind: str, name: str, text: str) -> tuple[tuple[float, float], ...]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise EdgevisionError(f"{kind} {name} coordinates must be numbers separated by commas, got '{text}'.") from None
    if not all(math.isfinite(v) for v in values):
        raise EdgevisionError(f"{kind} {name} coordinates must be finite numbers, got '{text}'.")
    if len(values) % 2:
        raise EdgevisionError(f"{kind} {name} has an odd number of coordinates ({len(values)}); give x,y pairs.")
    return tuple(zip(values[0::2], values[1::2]))


def parse_zone(text: str, *, dwell_seconds: float | None = None) -> Zone:
    """A :class:`Zone` from ``NAME:x1,y1,x2,y2,x3,y3,...``."""
    name, parts = _split_spec("zone", text)
    if len(parts) != 1:
        raise EdgevisionError(f"zone '{text}' must look like NAME:x1,y1,x2,y2,x3,y3,...")
    return Zone(name, _numbers("zone", name, parts[0]), dwell_seconds=dwell_seconds)


def parse_line(text: str) -> Line:
    """A :class:`Line` from ``NAME:x1,y1,x2,y2`` with an optional ``:in``, ``:out`` or ``:both``."""
    name, parts = _split_spec("line", text)
    if len(parts) > 2:
        raise EdgevisionError(f"line '{text}' must look like NAME:x1,y1,x2,y2 or NAME:x1,y1,x2,y2:in.")
    points = _numbers("line", name, parts[0])
    if len(points) != 2:
        raise EdgevisionError(f"line {name} needs exactly 2 points (x1,y1,x2,y2), got {len(points)}.")
    direction = parts[1] if len(parts) == 2 else "both"
    return Line(name, points[0], points[1], direction=direction)  # type: ignore[arg-type]


def line_sides(segment: np.ndarray, points: np.ndarray, *, margins: np.ndarray) -> np.ndarray:
    """Where each of ``points`` ``(N, 2)`` lies against ``segment`` ``[[x1, y1], [x2, y2]]``.

    ``-1`` more than its margin on the ``in`` side (left-hand, walking from start to end on
    screen), ``+1`` more than its margin on the ``out`` side, ``0`` within the margin or
    beyond either end of the segment.

    >>> line_sides(np.array([[0, 100], [200, 100]]), np.array([[50, 80], [50, 98], [50, 130], [250, 0]]),
    ...            margins=np.full(4, 5.0)).tolist()
    [-1, 0, 1, 0]
    """
    start, end = np.asarray(segment, np.float64)
    along = end - start
    length = float(np.hypot(*along))
    offset = np.asarray(points, np.float64).reshape(-1, 2) - start
    across = (along[0] * offset[:, 1] - along[1] * offset[:, 0]) / length  # signed distance, < 0 on the in side
    position = offset @ along / length**2  # 0 at start, 1 at end
    sides = np.where(across < -margins, -1, np.where(across > margins, 1, 0))
    return np.where((position >= 0) & (position <= 1), sides, 0).astype(np.int64)


def zone_sides(polygon: np.ndarray, points: np.ndarray, *, margins: np.ndarray) -> np.ndarray:
    """``+1`` for each of ``points`` more than its margin inside ``polygon``, ``-1`` more than its
    margin outside, ``0`` within the margin of the border.

    >>> square = np.array([[0, 0], [100, 0], [100, 100], [0, 100]])
    >>> zone_sides(square, np.array([[50, 50], [50, 2], [50, 120]]), margins=np.full(3, 5.0)).tolist()
    [1, 0, -1]
    """
    contour = np.asarray(polygon, np.float32).reshape(-1, 1, 2)
    points = np.asarray(points, np.float64).reshape(-1, 2)
    inside = np.array([cv2.pointPolygonTest(contour, (float(x), float(y)), True) for x, y in points])
    return np.where(inside > margins, 1, np.where(inside < -margins, -1, 0)).astype(np.int64)


def check_geometry(zones: tuple[Zone, ...], lines: tuple[Line, ...], *, width: int, height: int) -> None:
    """Raise the first problem of any zone or line against a ``width`` x ``height`` frame."""
    for zone in zones:
        zone.pixels(width=width, height=height)
    for line in lines:
        line.pixels(width=width, height=height)
    names = [z.name for z in zones] + [ln.name for ln in lines]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise EdgevisionError(f"zone and line names must be unique; {', '.join(repeated)} is used twice.")
