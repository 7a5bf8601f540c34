"""SSD detectors from MediaPipe: anchor generation, box decoding, and the OIDv4 SSD-MobileNetV2.

>>> len(ssd_anchors(OIDV4_ANCHORS))
1917

The anchors follow MediaPipe's ``SsdAnchorsCalculator``; no maintained pip library
generates MediaPipe SSD anchors, so they are written here from the calculator's algorithm.
The option values are the ones in the MediaPipe graph configs shipped inside the npm
packages (``object_detection_oid_v4`` and ``pose_detection`` subgraphs).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgevision.errors import EdgevisionError
from edgevision.models.ops import nms, sigmoid
from edgevision.models.transforms import ImageTransform, resize, to_tensor
from edgevision.types import Detections

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SsdAnchorOptions:
    """The fields of MediaPipe's ``SsdAnchorsCalculatorOptions`` that shape the anchors."""

    input_size: tuple[int, int]  # (width, height)
    strides: tuple[int, ...]
    min_scale: float
    max_scale: float
    aspect_ratios: tuple[float, ...] = (1.0,)
    anchor_offset: tuple[float, float] = (0.5, 0.5)
    interpolated_scale_aspect_ratio: float = 1.0
    reduce_boxes_in_lowest_layer: bool = False
    fixed_anchor_size: bool = False


@dataclass(frozen=True)
class BoxCoding:
    """How raw regressors become boxes (MediaPipe ``TensorsToDetectionsCalculatorOptions``)."""

    scales: tuple[float, float, float, float]  # x, y, w, h
    reverse_output_order: bool = False  # False: (y, x, h, w) as in the TF Object Detection API
    exponential_size: bool = False
    keypoints: int = 0
    keypoint_offset: int = 4


# object_detection_oid_v4 subgraph: 6 layers, 19x19 ... 1x1 feature maps on a 300x300 input.
OIDV4_ANCHORS = SsdAnchorOptions(
    input_size=(300, 300),
    strides=(16, 32, 64, 128, 256, 512),
    min_scale=0.2,
    max_scale=0.95,
    aspect_ratios=(1.0, 2.0, 0.5, 3.0, 0.3333),
    reduce_boxes_in_lowest_layer=True,
)
OIDV4_BOX_CODING = BoxCoding(scales=(10.0, 10.0, 5.0, 5.0), exponential_size=True)


def _layer_scale(options: SsdAnchorOptions, index: int) -> float:
    count = len(options.strides)
    if count == 1:
        return (options.min_scale + options.max_scale) * 0.5
    return options.min_scale + (options.max_scale - options.min_scale) * index / (count - 1.0)


def _layer_shapes(options: SsdAnchorOptions, index: int) -> list[tuple[float, float]]:
    """(scale, aspect ratio) of every anchor a layer adds at each cell."""
    scale = _layer_scale(options, index)
    if index == 0 and options.reduce_boxes_in_lowest_layer:
        return [(0.1, 1.0), (scale, 2.0), (scale, 0.5)]
    shapes = [(scale, ratio) for ratio in options.aspect_ratios]
    if options.interpolated_scale_aspect_ratio > 0.0:
        last = index == len(options.strides) - 1
        following = 1.0 if last else _layer_scale(options, index + 1)
        shapes.append((math.sqrt(scale * following), options.interpolated_scale_aspect_ratio))
    return shapes


def _stride_groups(strides: tuple[int, ...]) -> list[list[int]]:
    """Indices of consecutive layers that share a stride (MediaPipe merges their anchors)."""
    groups: list[list[int]] = []
    for i, stride in enumerate(strides):
        if groups and strides[groups[-1][0]] == stride:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def ssd_anchors(options: SsdAnchorOptions) -> np.ndarray:
    """(N, 4) anchors ``(x_center, y_center, w, h)`` normalised to [0, 1], in model output order."""
    out = []
    for group in _stride_groups(options.strides):
        shapes = [s for index in group for s in _layer_shapes(options, index)]
        sizes = np.array([[sc * math.sqrt(r), sc / math.sqrt(r)] for sc, r in shapes], dtype=np.float32)
        if options.fixed_anchor_size:
            sizes[:] = 1.0
        out.append(_grid_anchors(options, options.strides[group[0]], sizes))
    return np.concatenate(out).astype(np.float32)


def _grid_anchors(options: SsdAnchorOptions, stride: int, sizes: np.ndarray) -> np.ndarray:
    grid_w = math.ceil(options.input_size[0] / stride)
    grid_h = math.ceil(options.input_size[1] / stride)
    ys, xs = np.mgrid[0:grid_h, 0:grid_w]
    cx = (xs.reshape(-1) + options.anchor_offset[0]) / grid_w
    cy = (ys.reshape(-1) + options.anchor_offset[1]) / grid_h
    centers = np.repeat(np.stack([cx, cy], axis=1), len(sizes), axis=0)
    return np.concatenate([centers, np.tile(sizes, (grid_w * grid_h, 1))], axis=1)


def decode_boxes(raw: np.ndarray, anchors: np.ndarray, coding: BoxCoding) -> np.ndarray:
    """(N, 4) normalised ``xyxy`` boxes from (N, >=4) raw regressors and their anchors."""
    raw = raw.astype(np.float32)
    order = [0, 1, 2, 3] if coding.reverse_output_order else [1, 0, 3, 2]
    x, y, w, h = (raw[:, i] for i in order)
    sx, sy, sw, sh = coding.scales
    cx = x / sx * anchors[:, 2] + anchors[:, 0]
    cy = y / sy * anchors[:, 3] + anchors[:, 1]
    if coding.exponential_size:
        w, h = np.exp(w / sw) * anchors[:, 2], np.exp(h / sh) * anchors[:, 3]
    else:
        w, h = w / sw * anchors[:, 2], h / sh * anchors[:, 3]
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def decode_keypoints(raw: np.ndarray, anchors: np.ndarray, coding: BoxCoding) -> np.ndarray:
    """(N, K, 2) normalised ``(x, y)`` keypoints regressed after the box coordinates."""
    start = coding.keypoint_offset
    pairs = raw[:, start : start + 2 * coding.keypoints].astype(np.float32).reshape(len(raw), coding.keypoints, 2)
    if not coding.reverse_output_order:
        pairs = pairs[..., ::-1]
    sx, sy = coding.scales[:2]
    x = pairs[..., 0] / sx * anchors[:, None, 2] + anchors[:, None, 0]
    y = pairs[..., 1] / sy * anchors[:, None, 3] + anchors[:, None, 1]
    return np.stack([x, y], axis=-1)


# ----------------------------------------------------------------------------- OIDv4 SSD


# The 24 lines of object_detection_oidv4_labelmap.txt (pinned below as ``labelmap.txt``);
# line 0, "???", is the background.
OIDV4_LABELS: tuple[str, ...] = (
    "???",
    "Bicycle",
    "Boot",
    "Laptop",
    "Person",
    "Chair",
    "Cattle",
    "Desk",
    "Cat",
    "Computer mouse",
    "Computer monitor",
    "Box",
    "Mug",
    "Coffee cup",
    "Stationary bicycle",
    "Table",
    "Bottle",
    "High heels",
    "Vehicle",
    "Footwear",
    "Dog",
    "Book",
    "Camera",
    "Car",
)


def read_labels(path: Path) -> tuple[str, ...]:
    """Class names, one a line, as in MediaPipe's ``*_labelmap.txt`` (line 0 is the background)."""
    try:
        return tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    except OSError as exc:
        raise EdgevisionError(f"cannot read the label map {path}: {exc}; pull the model again.") from None


@dataclass
class SsdProcessor:
    """Pre-processing and decoding of MediaPipe's SSD-MobileNetV2 (boxes + per-class logits).

    Input: RGB stretched to the input size, scaled to [-1, 1], NHWC float32.
    Outputs: raw box regressors ``(1, A, 4)`` and class logits ``(1, A, C)``; class 0 is the
    background ("???") and is never reported. Each anchor keeps its best class (as MediaPipe
    does); class-aware NMS follows.
    """

    class_names: tuple[str, ...]
    input_size: tuple[int, int] = (300, 300)
    anchor_options: SsdAnchorOptions = OIDV4_ANCHORS
    box_coding: BoxCoding = OIDV4_BOX_CODING
    score_threshold: float = 0.4
    iou_threshold: float = 0.5
    max_detections: int = 100
    background_class: int | None = 0
    task = "detection"

    def __post_init__(self) -> None:
        self.anchors = ssd_anchors(self.anchor_options)

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, ImageTransform]:
        """Stretch to the input size, BGR -> RGB, scale to [-1, 1], NHWC float32."""
        resized, transform = resize(image, self.input_size)
        x = to_tensor(resized, swap_rb=True, nchw=False)
        x /= 127.5  # x / 127.5 - 1 in this order: (x - 127.5) / 127.5 rounds differently in float32
        x -= 1.0
        return x, transform

    def decode(self, outputs: dict[str, np.ndarray], transform: ImageTransform) -> Detections:
        """Detections in source pixels from the raw box and logit tensors."""
        raw_boxes, logits = self.split_outputs(outputs)
        scores, class_ids = self._best_classes(logits)
        keep = np.nonzero(scores >= self.score_threshold)[0]
        if len(keep) == 0:
            return Detections.empty(self.class_names)
        boxes = decode_boxes(raw_boxes[keep], self.anchors[keep], self.box_coding)
        boxes *= np.array(self.input_size * 2, dtype=np.float32)
        scores, class_ids = scores[keep], class_ids[keep]
        order = nms(boxes, scores, class_ids, iou_threshold=self.iou_threshold, max_detections=self.max_detections)
        return Detections(transform.boxes_to_source(boxes[order]), scores[order], class_ids[order], self.class_names)

    def split_outputs(self, outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``(boxes (A, 4), logits (A, C))`` picked by shape from the model outputs."""
        count = len(self.anchors)
        tensors = [t.reshape(count, -1) for t in outputs.values() if t.size % count == 0 and t.size >= count * 4]
        boxes = [t for t in tensors if t.shape[1] == 4]
        logits = [t for t in tensors if t.shape[1] == len(self.class_names)]
        if len(boxes) != 1 or len(logits) != 1:
            raise EdgevisionError(
                f"expected SSD outputs of shapes (1, {count}, 4) and (1, {count}, {len(self.class_names)}), "
                f"got {[t.shape for t in outputs.values()]}; is this the right model and label map?"
            )
        return boxes[0], logits[0]

    def _best_classes(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores = sigmoid(logits.astype(np.float64)).astype(np.float32)  # float64: no exp overflow
        if self.background_class is not None:
            scores[:, self.background_class] = 0.0
        class_ids = scores.argmax(axis=1)
        return scores[np.arange(len(scores)), class_ids], class_ids.astype(np.int64)
