"""NanoDet-Plus official ONNX export: ``output`` ``[1, N, C + 4 * (R + 1)]``.

Columns: C class scores (sigmoid applied), then for each side (left, top, right, bottom)
R + 1 = 8 logits of the distance distribution (GFL). Levels at strides 8, 16, 32, 64 with
``ceil(size / stride)`` cells each; centre priors at ``(col, row) * stride`` (no half-cell
offset). Pre-processing: BGR, ImageNet mean/std in pixel units, stretched.
"""

from __future__ import annotations

import numpy as np

from edgevision.models.decoders import DecodeContext, best_class, finish, grid_centres, register_decoder, single_output
from edgevision.models.ops import softmax
from edgevision.types import Detections

STRIDES = (8, 16, 32, 64)
BINS = 8  # reg_max + 1


@register_decoder(
    "nanodet-plus",
    task="detection",
    summary="NanoDet-Plus ONNX: [1, N, C+32] class scores + GFL distance distributions",
    input_size=(416, 416),
    resize="stretch",
    color="bgr",
    mean=(103.53, 116.28, 123.675),
    std=(57.375, 57.12, 58.395),
    labels="coco80",
    score_threshold=0.35,
    iou_threshold=0.6,
)
def decode_nanodet_plus(outputs: dict[str, np.ndarray], context: DecodeContext) -> Detections:
    rows = single_output(outputs, "nanodet-plus")
    classes = rows.shape[1] - 4 * BINS
    cells, strides = grid_centres(context.input_size, STRIDES, ceil=True)
    distances = softmax(rows[:, classes:].reshape(-1, 4, BINS)) @ np.arange(BINS, dtype=np.float32)
    distances *= strides[:, None]
    centres = cells * strides[:, None]
    xyxy = np.concatenate([centres - distances[:, :2], centres + distances[:, 2:]], axis=1)
    scores, class_ids = best_class(rows[:, :classes])
    return finish(context, xyxy, scores, class_ids)
