"""Already-decoded boxes (``boxes-scores``): exports that end in boxes, or in detections.

Three layouts are read:
- one output ``[1, N, 6]`` / ``[N, 6]``: x1, y1, x2, y2, score, class (Ultralytics ``nms=True``,
  CenterNet-style heads);
- one output ``[N, 7]``: batch, x1, y1, x2, y2, class, score (YOLOv7 ``--end2end`` with
  ONNX Runtime NMS);
- two outputs, boxes ``[1, N, 4]`` x1, y1, x2, y2 and scores ``[1, N, C]`` or ``[1, N]``: NMS
  follows here.
Coordinates are input pixels, or normalised when no value exceeds 1.5.
"""

from __future__ import annotations

import numpy as np

from edgevision.errors import EdgevisionError
from edgevision.models.decoders import DecodeContext, best_class, finish, register_decoder
from edgevision.types import Detections


@register_decoder(
    "boxes-scores",
    task="detection",
    summary="decoded boxes: [N,6] x1,y1,x2,y2,score,class; [N,7] batch,box,class,score; or boxes + scores",
    resize="letterbox",
    pad_value=114,
    color="rgb",
    mean=0.0,
    std=255.0,
    labels="coco80",
    score_threshold=0.25,
    iou_threshold=0.5,
)
def decode_boxes_scores(outputs: dict[str, np.ndarray], context: DecodeContext) -> Detections:
    tensors = {n: np.asarray(t, np.float32) for n, t in outputs.items()}
    rows = [t.reshape(-1, t.shape[-1]) for t in tensors.values() if t.ndim in (2, 3) and t.shape[-1] in (6, 7)]
    if len(tensors) == 1 and len(rows) == 1:
        return _decode_rows(rows[0], context)
    boxes = [n for n, t in tensors.items() if t.ndim == 3 and t.shape[-1] == 4]
    if len(boxes) == 1:
        box = tensors[boxes[0]].reshape(-1, 4)
        others = [t for n, t in tensors.items() if n != boxes[0] and t.size and t.size % max(len(box), 1) == 0]
        if len(others) == 1:
            scores, class_ids = best_class(others[0].reshape(len(box), -1))
            return finish(context, _to_pixels(box, context), scores, class_ids)
    shapes = ", ".join(f"{n} {list(t.shape)}" for n, t in tensors.items())
    raise EdgevisionError(
        f"the boxes-scores decoder expects one [N, 6] or [N, 7] output, or boxes [1, N, 4] with scores, got {shapes}."
    )


def _decode_rows(rows: np.ndarray, context: DecodeContext) -> Detections:
    if rows.shape[1] == 7:  # batch, x1, y1, x2, y2, class, score
        rows = rows[rows[:, 0] == 0][:, [1, 2, 3, 4, 6, 5]]
    return finish(context, _to_pixels(rows[:, :4], context), rows[:, 4], np.rint(rows[:, 5]), suppress=False)


def _to_pixels(xyxy: np.ndarray, context: DecodeContext) -> np.ndarray:
    if len(xyxy) and float(np.abs(xyxy).max()) <= 1.5:
        w, h = context.input_size
        return xyxy * np.array([w, h, w, h], np.float32)
    return xyxy
