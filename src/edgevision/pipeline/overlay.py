"""Zones and lines drawn over an annotated frame, with a legend of their counts in a corner."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edgevision.annotate import FONT, WHITE, TextStyle, text_style

ZONE_BGR = (0, 200, 255)
ALERT_BGR = (0, 0, 255)
LINE_BGR = (255, 200, 0)


@dataclass(frozen=True)
class LegendRow:
    """One line of the legend: its text and the colour of the shape it describes."""

    text: str
    bgr: tuple[int, int, int]


def _stroke(image: np.ndarray) -> int:
    return max(2, round(min(image.shape[:2]) / 250))


def draw_zone(image: np.ndarray, name: str, polygon: np.ndarray, *, occupied: int = 0) -> None:
    """A translucent polygon, red while tracks are inside (in place); its count goes in the legend."""
    bgr = ALERT_BGR if occupied else ZONE_BGR
    pts = polygon.astype(np.int32).reshape(-1, 1, 2)
    x, y, w, h = cv2.boundingRect(pts)
    x, y = max(x, 0), max(y, 0)
    roi = image[y : y + h, x : x + w]
    tint = roi.copy()
    cv2.fillPoly(tint, [pts - [x, y]], bgr)
    cv2.addWeighted(tint, 0.25, roi, 0.75, 0, dst=roi)
    cv2.polylines(image, [pts], True, bgr, _stroke(image), cv2.LINE_AA)


def draw_line(image: np.ndarray, name: str, ends: np.ndarray, counts: dict[str, int] | None = None) -> None:
    """A counting line with a dot at its start (in place); its counts go in the legend."""
    a, b = (tuple(int(v) for v in p) for p in ends)
    cv2.line(image, a, b, LINE_BGR, _stroke(image), cv2.LINE_AA)
    cv2.circle(image, a, 2 * _stroke(image), LINE_BGR, -1, cv2.LINE_AA)


def legend_rows(occupancy: dict[str, int], crossings: dict[str, dict[str, int]]) -> list[LegendRow]:
    """The legend's lines: each zone with the tracks inside now, each line with its in/out counts.

    >>> [r.text for r in legend_rows({"lawn": 2}, {"path": {"in": 5, "out": 6}})]
    ['lawn: 2 inside', 'path: 5 in, 6 out']
    """
    zones = [LegendRow(f"{name}: {n} inside", ALERT_BGR if n else ZONE_BGR) for name, n in occupancy.items()]
    lines = [
        LegendRow(f"{name}: {c.get('in', 0)} in, {c.get('out', 0)} out", LINE_BGR) for name, c in crossings.items()
    ]
    return zones + lines


def _panel_size(rows: list[LegendRow], style: TextStyle) -> tuple[int, int, int]:
    """Width and height of the panel, and the height of one row."""
    sizes = [style.size(row.text) for row in rows]
    row_h = max(h for _, h in sizes)
    return max(w for w, _ in sizes) + row_h + style.pad, row_h * len(rows) + 2 * style.pad, row_h


def draw_legend(image: np.ndarray, rows: list[LegendRow], *, margin: int | None = None) -> None:
    """A semi-transparent dark panel in the top-left corner with one row per zone or line (in place).

    Each row starts with a square in its shape's colour; the text size follows the frame size.
    """
    if not rows:
        return
    style = text_style(image.shape)
    w, h, row_h = _panel_size(rows, style)
    m = margin if margin is not None else style.pad * 2
    w, h = min(w, image.shape[1] - m), min(h, image.shape[0] - m)
    roi = image[m : m + h, m : m + w]
    cv2.addWeighted(np.zeros_like(roi), 0.55, roi, 0.45, 0, dst=roi)
    for i, row in enumerate(rows):
        _legend_row(image, row, (m + style.pad, m + style.pad + i * row_h), row_h, style)


def _legend_row(image: np.ndarray, row: LegendRow, origin: tuple[int, int], row_h: int, style: TextStyle) -> None:
    x, y = origin
    box = row_h - 2 * style.pad
    cv2.rectangle(image, (x, y + style.pad), (x + box, y + style.pad + box), row.bgr, -1)
    (_, th), base = cv2.getTextSize(row.text, FONT, style.scale, style.thickness)
    baseline = y + row_h - style.pad - base
    cv2.putText(image, row.text, (x + row_h, baseline), FONT, style.scale, WHITE, style.thickness, cv2.LINE_AA)


def draw_box(image: np.ndarray, box, *, bgr: tuple[int, int, int] = ALERT_BGR, thickness: int = 3) -> None:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    cv2.rectangle(image, (x1, y1), (x2, y2), bgr, thickness)
