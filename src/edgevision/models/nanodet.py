"""NanoDet: anchor-free detector with a GFL head (class scores + box-side distributions).

>>> from edgevision.zoo import get_spec
>>> get_spec("nanodet-m").input_size
(416, 416)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from edgevision.errors import EdgevisionError
from edgevision.models.coco import COCO80_CLASSES
from edgevision.models.ops import nms, softmax
from edgevision.models.transforms import ImageTransform, resize, to_tensor
from edgevision.types import Detections

logger = logging.getLogger(__name__)

# NanoDet's training pipeline normalises BGR images with these (nanodet configs, "normalize").
BGR_MEAN = np.array([103.53, 116.28, 123.675], dtype=np.float32)
BGR_STD = np.array([57.375, 57.12, 58.395], dtype=np.float32)


@dataclass
class NanoDetProcessor:
    """Pre-processing and GFL decoding of NanoDet exports with NCHW float input.

    Outputs are matched to strides by their shapes: per stride, one ``(1, cells, classes)``
    tensor of sigmoid scores and one ``(1, cells, 4 * (reg_max + 1))`` tensor of box-side
    distribution logits, ``cells = (H / stride) * (W / stride)``.
    """

    input_size: tuple[int, int] = (416, 416)  # (width, height)
    strides: tuple[int, ...] = (8, 16, 32)
    score_threshold: float = 0.35
    iou_threshold: float = 0.6
    max_detections: int = 100
    class_names: tuple[str, ...] = COCO80_CLASSES
    task = "detection"

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, ImageTransform]:
        """Stretch to the input size, normalise BGR with NanoDet's mean/std, NCHW float32."""
        resized, transform = resize(image, self.input_size)
        return to_tensor(resized, mean=tuple(BGR_MEAN), std=tuple(BGR_STD)), transform

    def decode(self, outputs: dict[str, np.ndarray], transform: ImageTransform) -> Detections:
        """Detections in source pixels from the per-stride score and distribution tensors."""
        levels = [self._decode_level(*pair) for pair in self.pair_outputs(outputs)]
        boxes, scores, class_ids = (np.concatenate(parts) for parts in zip(*levels))
        keep = nms(boxes, scores, class_ids, iou_threshold=self.iou_threshold, max_detections=self.max_detections)
        return Detections(transform.boxes_to_source(boxes[keep]), scores[keep], class_ids[keep], self.class_names)

    def pair_outputs(self, outputs: dict[str, np.ndarray]) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """``(stride, scores (cells, C), distributions (cells, 4 * bins))`` for every stride."""
        tensors = [t.reshape(t.shape[-2], t.shape[-1]) for t in outputs.values() if t.ndim >= 2]
        pairs = []
        for stride in self.strides:
            cells = self._grid(stride)[0] * self._grid(stride)[1]
            scores = [t for t in tensors if t.shape == (cells, len(self.class_names))]
            dists = [t for t in tensors if t.shape[0] == cells and self._is_distribution(t)]
            if len(scores) != 1 or len(dists) != 1:
                raise EdgevisionError(
                    f"cannot find NanoDet outputs for stride {stride} among shapes "
                    f"{[t.shape for t in outputs.values()]}; is this a NanoDet model of input {self.input_size}?"
                )
            pairs.append((stride, scores[0], dists[0]))
        return pairs

    def _is_distribution(self, tensor: np.ndarray) -> bool:
        return tensor.shape[1] % 4 == 0 and tensor.shape[1] != len(self.class_names)

    def _grid(self, stride: int) -> tuple[int, int]:
        return -(-self.input_size[0] // stride), -(-self.input_size[1] // stride)

    def _decode_level(self, stride: int, scores: np.ndarray, dists: np.ndarray):
        cell, class_ids = np.nonzero(scores > self.score_threshold)
        grid_w = self._grid(stride)[0]
        boxes = gfl_boxes(dists[cell], cell, grid_w, stride)
        return boxes, scores[cell, class_ids].astype(np.float32), class_ids.astype(np.int64)


def gfl_boxes(dists: np.ndarray, cells: np.ndarray, grid_w: int, stride: int) -> np.ndarray:
    """xyxy input-pixel boxes from GFL distribution logits of grid ``cells`` (row-major).

    Each side's distance is the expected bin index under a softmax, times ``stride``,
    measured from the cell centre ``((col + 0.5) * stride, (row + 0.5) * stride)``.

    >>> logits = np.full((1, 8), -50.0); logits[0, [1, 3, 5, 7]] = 50.0  # 2 bins, all sides 1
    >>> gfl_boxes(logits, np.array([0]), 4, 8).tolist()
    [[-4.0, -4.0, 12.0, 12.0]]
    """
    bins = dists.shape[-1] // 4
    sides = softmax(dists.reshape(-1, 4, bins).astype(np.float32), axis=-1) @ np.arange(bins, dtype=np.float32)
    sides *= stride
    cx = (cells % grid_w + 0.5) * stride
    cy = (cells // grid_w + 0.5) * stride
    return np.stack([cx - sides[:, 0], cy - sides[:, 1], cx + sides[:, 2], cy + sides[:, 3]], axis=1).astype(np.float32)
