"""Draw predictions on a copy of an image: boxes with labels that do not overlap, skeletons."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edgevision.types import Detections, Poses, Prediction

_PALETTE = np.array(
    [
        (56, 56, 255),
        (151, 157, 255),
        (31, 112, 255),
        (29, 178, 255),
        (49, 210, 207),
        (10, 249, 72),
        (23, 204, 146),
        (134, 219, 61),
        (52, 147, 26),
        (187, 212, 0),
        (168, 153, 44),
        (255, 194, 0),
        (147, 69, 52),
        (255, 115, 100),
        (236, 24, 0),
        (255, 56, 132),
        (133, 0, 82),
        (255, 56, 203),
    ],
    dtype=np.uint8,
)


def color(index: int) -> tuple[int, int, int]:
    """A stable BGR colour for a class or track index."""
    return tuple(int(c) for c in _PALETTE[int(index) % len(_PALETTE)])


FONT = cv2.FONT_HERSHEY_SIMPLEX
WHITE = (255, 255, 255)


@dataclass(frozen=True)
class TextStyle:
    """How big text is drawn: OpenCV font scale, stroke thickness and padding around it, in pixels."""

    scale: float
    thickness: int
    pad: int

    def size(self, text: str) -> tuple[int, int]:
        """Width and height of ``text`` with its padding."""
        (w, h), base = cv2.getTextSize(text, FONT, self.scale, self.thickness)
        return w + 2 * self.pad, h + base + 2 * self.pad


def text_style(shape: tuple[int, ...], *, size: float = 1.0) -> TextStyle:
    """A text style that reads well at this frame size (``shape`` is ``image.shape``).

    The scale follows the short side of the frame, with a floor so 320x240 stays legible;
    ``size`` scales it further (box labels use a little less than the legend).

    >>> text_style((240, 320)).scale < text_style((1080, 1920)).scale
    True
    """
    scale = size * max(0.4, 0.3 + min(shape[:2]) / 1400)
    return TextStyle(round(scale, 3), 2 if scale >= 0.9 else 1, max(2, round(4 * scale)))


def _thickness(image: np.ndarray) -> int:
    return max(1, round(max(image.shape[:2]) / 400))


Rect = tuple[int, int, int, int]


def _intersects(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _overlap(a: Rect, b: Rect) -> int:
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def _candidates(box: Rect, size: tuple[int, int], frame_wh: tuple[int, int], placed: list[Rect]) -> list[Rect]:
    """Label slots for one box, best first: above it, inside its top, below it, then the slots
    that touch a placed label or the frame's edge, nearest to the box first."""
    (w, h), (fw, fh) = size, frame_wh
    x = min(max(box[0], 0), max(fw - w, 0))
    preferred = [box[1] - h, box[1], box[3]]
    others = sorted([0, fh - h] + [y for p in placed for y in (p[1] - h, p[3])], key=lambda y: abs(y - box[1] + h))
    tops = [min(max(y, 0), max(fh - h, 0)) for y in preferred + others]
    return [(x, y, x + w, y + h) for y in dict.fromkeys(tops)]


def place_labels(boxes: np.ndarray, sizes: list[tuple[int, int]], frame_wh: tuple[int, int]) -> list[Rect]:
    """Where to draw each box's label so that no two labels overlap, as ``(x1, y1, x2, y2)``.

    No library we use does this (supervision's ``smart_position`` pushes labels apart by
    forces and can leave them overlapping or far from their boxes), so it is a small
    greedy: labels are placed top of the frame first, each in the first candidate slot
    (above its box, inside its top, below it, else stacked against a placed label) that
    no placed label touches. Stacking against every placed label finds any free gap in the
    label's column; when the column is full, the slot that overlaps least is taken.

    >>> place_labels(np.array([[10, 50, 60, 90], [12, 52, 62, 92]]), [(40, 10), (40, 10)], (100, 100))
    [(10, 40, 50, 50), (12, 52, 52, 62)]
    """
    placed: dict[int, Rect] = {}
    for i in np.argsort(boxes[:, 1], kind="stable") if len(boxes) else []:
        taken = list(placed.values())
        slots = _candidates(tuple(int(v) for v in boxes[i]), sizes[i], frame_wh, taken)
        free = [s for s in slots if not any(_intersects(s, p) for p in taken)]
        placed[int(i)] = free[0] if free else min(slots, key=lambda s: sum(_overlap(s, p) for p in taken))
    return [placed[i] for i in range(len(boxes))]


def draw_label(image: np.ndarray, text: str, rect: Rect, bgr: tuple[int, int, int], style: TextStyle) -> None:
    """``text`` in white on a ``bgr`` rectangle (in place)."""
    x1, y1, x2, y2 = rect
    cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), bgr, -1)
    (_, h), base = cv2.getTextSize(text, FONT, style.scale, style.thickness)
    cv2.putText(
        image, text, (x1 + style.pad, y2 - style.pad - base), FONT, style.scale, WHITE, style.thickness, cv2.LINE_AA
    )


def draw_boxes(image: np.ndarray, boxes: np.ndarray, texts: list[str], colors: list[tuple[int, int, int]]) -> None:
    """Boxes first, then their labels placed so they do not overlap each other (in place)."""
    t = _thickness(image)
    for box, bgr in zip(boxes.round().astype(int), colors):
        cv2.rectangle(image, tuple(box[:2]), tuple(box[2:]), bgr, t)
    style = text_style(image.shape, size=0.8)
    rects = place_labels(boxes, [style.size(text) for text in texts], (image.shape[1], image.shape[0]))
    for text, rect, bgr in zip(texts, rects, colors):
        draw_label(image, text, rect, bgr, style)


def _caption(name: str, score: float, track_id: int | None) -> str:
    text = f"{name} {score:.2f}"
    return text if track_id is None else f"#{track_id} {text}"


def draw_detections(image: np.ndarray, detections: Detections, *, in_place: bool = False) -> np.ndarray:
    """Boxes and ``label score`` captions (``#id`` too when tracked), on a copy unless ``in_place``."""
    out = image if in_place else image.copy()
    ids = detections.tracker_ids
    keys = ids if ids is not None else detections.class_ids
    texts = [
        _caption(detections.label(i), detections.scores[i], None if ids is None else int(ids[i]))
        for i in range(len(detections))
    ]
    draw_boxes(out, detections.xyxy, texts, [color(k) for k in keys])
    return out


def _skeleton(image: np.ndarray, kps: np.ndarray, edges, bgr: tuple[int, int, int], min_score: float) -> None:
    t = _thickness(image)
    for a, b in edges:
        if kps[a, 2] >= min_score and kps[b, 2] >= min_score:
            pa, pb = tuple(kps[a, :2].round().astype(int)), tuple(kps[b, :2].round().astype(int))
            cv2.line(image, pa, pb, bgr, t + 1, cv2.LINE_AA)
    for x, y, s in kps:
        if s >= min_score:
            cv2.circle(image, (round(x), round(y)), t + 2, WHITE, -1, cv2.LINE_AA)
            cv2.circle(image, (round(x), round(y)), t + 1, bgr, -1, cv2.LINE_AA)


def draw_poses(image: np.ndarray, poses: Poses, *, min_score: float = 0.3, in_place: bool = False) -> np.ndarray:
    """Skeleton edges and keypoints whose score is at least ``min_score``; person boxes when the
    model gives them. On a copy unless ``in_place``."""
    out = image if in_place else image.copy()
    ids = poses.tracker_ids
    colors = [color(ids[i] if ids is not None else i) for i in range(len(poses))]
    for kps, bgr in zip(poses.keypoints, colors):
        _skeleton(out, kps, poses.edges, bgr, min_score)
    if poses.xyxy is not None and len(poses.xyxy) == len(poses):
        texts = [_caption("person", poses.scores[i], None if ids is None else int(ids[i])) for i in range(len(poses))]
        draw_boxes(out, poses.xyxy, texts, colors)
    return out


def draw(image: np.ndarray, prediction: Prediction, *, in_place: bool = False) -> np.ndarray:
    """Draw any prediction on a copy of ``image`` (on ``image`` itself with ``in_place``: a
    frame nothing else reads saves a copy); raw outputs leave the image unchanged."""
    if isinstance(prediction, Detections):
        return draw_detections(image, prediction, in_place=in_place)
    if isinstance(prediction, Poses):
        return draw_poses(image, prediction, in_place=in_place)
    return image if in_place else image.copy()


def draw_banner(image: np.ndarray, text: str) -> np.ndarray:
    """A red band with ``text`` across the top of a copy of ``image``, the text shrunk to fit its width."""
    out = image.copy()
    scale = 0.5 * _thickness(out) + 0.1
    (w, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
    scale *= min(1.0, max(out.shape[1] - 12, 12) / max(w, 1))
    (_, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
    cv2.rectangle(out, (0, 0), (out.shape[1], h + 2 * base + 4), (0, 0, 200), -1)
    cv2.putText(out, text, (6, h + base + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 2, cv2.LINE_AA)
    return out
