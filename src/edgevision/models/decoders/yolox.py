"""Official YOLOX ONNX exports (``tools/export_onnx.py``): ``output`` ``[1, N, 5 + C]``.

The default export leaves the grid decode out (``decode_in_inference=False``): columns 0-1
are offsets from the grid cell, 2-3 are log(size / stride); with ``--decode_in_inference``
they are cx, cy, w, h in input pixels. Objectness and class columns are probabilities in
both. Which of the two a file is shows in its values: decoded centres span the input, raw
offsets stay within a few cells, so each call checks. Pre-processing: BGR, 0-255 floats,
letterbox in the top-left corner with grey 114.
"""

from __future__ import annotations

import numpy as np

from edgevision.models.decoders import (
    DecodeContext,
    best_class,
    cxcywh_to_xyxy,
    finish,
    grid_centres,
    register_decoder,
    single_output,
)
from edgevision.types import Detections

STRIDES = (8, 16, 32)


@register_decoder(
    "yolox",
    task="detection",
    summary="official YOLOX ONNX: [1, N, 5+C], grid-decoded or not (found from the values)",
    input_size=(416, 416),
    resize="letterbox-corner",
    pad_value=114,
    color="bgr",
    mean=0.0,
    std=1.0,
    labels="coco80",
    score_threshold=0.3,
    iou_threshold=0.45,
)
def decode_yolox(outputs: dict[str, np.ndarray], context: DecodeContext) -> Detections:
    xyxy, class_scores = yolox_candidates(single_output(outputs, "yolox"), context.input_size)
    scores, class_ids = best_class(class_scores)
    return finish(context, xyxy, scores, class_ids)


def yolox_candidates(rows: np.ndarray, input_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Boxes xyxy in input pixels and class scores (objectness x class) of every row."""
    boxes = rows[:, :4]
    if not is_grid_decoded(boxes, input_size):
        cells, strides = grid_centres(input_size, STRIDES)
        if len(cells) == len(rows):
            centres = (boxes[:, :2] + cells) * strides[:, None]
            boxes = np.concatenate([centres, np.exp(boxes[:, 2:4]) * strides[:, None]], axis=1)
    return cxcywh_to_xyxy(boxes), rows[:, 5:] * rows[:, 4:5]


def is_grid_decoded(boxes: np.ndarray, input_size: tuple[int, int]) -> bool:
    """True when box centres are in input pixels: they spread over the input, not over a cell."""
    if len(boxes) == 0:
        return True
    return float(np.percentile(boxes[:, 0], 99)) > input_size[0] / 4
