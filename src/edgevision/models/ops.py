"""Small pure functions shared by decoders: NMS, sigmoid, softmax."""

from __future__ import annotations

import cv2
import numpy as np


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def nms(
    xyxy: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray | None = None,
    *,
    iou_threshold: float = 0.5,
    max_detections: int = 300,
) -> np.ndarray:
    """Indices kept by (class-aware when ``class_ids`` is given) non-maximum suppression.

    Uses OpenCV's implementation; returns indices sorted by descending score.

    >>> boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], np.float32)
    >>> nms(boxes, np.array([0.9, 0.8, 0.7], np.float32)).tolist()
    [0, 2]
    """
    if len(xyxy) == 0:
        return np.zeros((0,), dtype=np.int64)
    xywh = np.asarray(xyxy, dtype=np.float32).copy()
    xywh[:, 2:] -= xywh[:, :2]
    scores = np.asarray(scores, dtype=np.float32)
    if class_ids is None:
        keep = cv2.dnn.NMSBoxes(xywh, scores, 0.0, iou_threshold, top_k=max_detections)
    else:
        keep = cv2.dnn.NMSBoxesBatched(
            xywh, scores, np.asarray(class_ids, dtype=np.int32), 0.0, iou_threshold, top_k=max_detections
        )
    keep = np.asarray(keep, dtype=np.int64).reshape(-1)
    return keep[np.argsort(-scores[keep], kind="stable")][:max_detections]
