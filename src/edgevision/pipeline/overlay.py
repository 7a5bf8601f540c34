"""Zones, lines, their counts and run status drawn over an annotated frame."""

from __future__ import annotations

import cv2
import numpy as np

ZONE_BGR = (0, 200, 255)
ALERT_BGR = (0, 0, 255)
LINE_BGR = (255, 200, 0)


def _text(image: np.ndarray, text: str, origin: tuple[int, int], bgr: tuple[int, int, int]) -> None:
    x, y = int(origin[0]), int(origin[1])
    cv2.putText(image, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.55, bgr, 1, cv2.LINE_AA)


def draw_zone(image: np.ndarray, name: str, polygon: np.ndarray, *, occupied: int = 0) -> None:
    """A translucent polygon with its name and how many tracks are inside (in place)."""
    bgr = ALERT_BGR if occupied else ZONE_BGR
    pts = polygon.astype(np.int32).reshape(-1, 1, 2)
    x, y, w, h = cv2.boundingRect(pts)
    roi = image[y : y + h, x : x + w]
    tint = roi.copy()
    cv2.fillPoly(tint, [pts - [x, y]], bgr)
    cv2.addWeighted(tint, 0.25, roi, 0.75, 0, dst=roi)
    cv2.polylines(image, [pts], True, bgr, 2, cv2.LINE_AA)
    _text(image, f"{name}: {occupied}", polygon.min(axis=0) + [4, 18], bgr)


def draw_line(image: np.ndarray, name: str, ends: np.ndarray, counts: dict[str, int]) -> None:
    """A counting line with its name and in/out counts (in place)."""
    a, b = (tuple(int(v) for v in p) for p in ends)
    cv2.line(image, a, b, LINE_BGR, 2, cv2.LINE_AA)
    cv2.circle(image, a, 4, LINE_BGR, -1)
    _text(image, f"{name} in {counts.get('in', 0)} out {counts.get('out', 0)}", (a[0] + 4, a[1] - 8), LINE_BGR)


def draw_box(image: np.ndarray, box, *, bgr: tuple[int, int, int] = ALERT_BGR, thickness: int = 3) -> None:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    cv2.rectangle(image, (x1, y1), (x2, y2), bgr, thickness)
