"""Draw predictions on a copy of an image: boxes with labels, skeletons."""

from __future__ import annotations

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


def _thickness(image: np.ndarray) -> int:
    return max(1, round(max(image.shape[:2]) / 400))


def _label(image: np.ndarray, text: str, origin: tuple[int, int], bgr: tuple[int, int, int]) -> None:
    scale = 0.35 * _thickness(image) + 0.15
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x, y = origin[0], max(origin[1], h + base)
    cv2.rectangle(image, (x, y - h - base), (x + w, y), bgr, -1)
    cv2.putText(image, text, (x, y - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def draw_detections(image: np.ndarray, detections: Detections) -> np.ndarray:
    """Boxes and ``label score`` captions (``#id`` too when tracked)."""
    out = image.copy()
    t = _thickness(out)
    for i in range(len(detections)):
        x1, y1, x2, y2 = detections.xyxy[i].round().astype(int)
        key = detections.tracker_ids[i] if detections.tracker_ids is not None else detections.class_ids[i]
        bgr = color(key)
        cv2.rectangle(out, (x1, y1), (x2, y2), bgr, t)
        text = f"{detections.label(i)} {detections.scores[i]:.2f}"
        if detections.tracker_ids is not None:
            text = f"#{detections.tracker_ids[i]} {text}"
        _label(out, text, (x1, y1), bgr)
    return out


def draw_poses(image: np.ndarray, poses: Poses, *, min_score: float = 0.3) -> np.ndarray:
    """Skeleton edges and keypoints whose score is at least ``min_score``."""
    out = image.copy()
    t = _thickness(out)
    for person, kps in enumerate(poses.keypoints):
        bgr = color(poses.tracker_ids[person] if poses.tracker_ids is not None else person)
        for a, b in poses.edges:
            if kps[a, 2] >= min_score and kps[b, 2] >= min_score:
                cv2.line(
                    out,
                    tuple(kps[a, :2].round().astype(int)),
                    tuple(kps[b, :2].round().astype(int)),
                    bgr,
                    t + 1,
                    cv2.LINE_AA,
                )
        for x, y, s in kps:
            if s >= min_score:
                cv2.circle(out, (round(x), round(y)), t + 2, (255, 255, 255), -1, cv2.LINE_AA)
                cv2.circle(out, (round(x), round(y)), t + 1, bgr, -1, cv2.LINE_AA)
    return out


def draw(image: np.ndarray, prediction: Prediction) -> np.ndarray:
    """Draw any prediction; raw outputs leave the image unchanged."""
    if isinstance(prediction, Detections):
        return draw_detections(image, prediction)
    if isinstance(prediction, Poses):
        return draw_poses(image, prediction)
    return image.copy()


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
