"""Ultralytics YOLO exports: ``yolov8`` (also YOLO11) and ``yolov5``.

YOLOv8 / YOLO11 ``yolo export format=onnx``: ``output0`` ``[1, 4 + C, N]``, rows cx, cy, w, h
in input pixels then C class scores (sigmoid applied, no objectness). YOLOv5 ``export.py``:
``[1, N, 5 + C]``, cx, cy, w, h, objectness, C class probabilities. Both: RGB / 255,
letterbox centred with grey 114, NMS left to the caller.
"""

from __future__ import annotations

import numpy as np

from edgevision.models.decoders import (
    DecodeContext,
    best_class,
    cxcywh_to_xyxy,
    finish,
    register_decoder,
    single_output,
)
from edgevision.types import Detections

_UPSTREAM = {
    "input_size": (640, 640),
    "resize": "letterbox",
    "pad_value": 114,
    "color": "rgb",
    "mean": 0.0,
    "std": 255.0,
    "labels": "coco80",
}


@register_decoder(
    "yolov8",
    task="detection",
    summary="Ultralytics YOLOv8 / YOLO11 ONNX: [1, 4+C, N] cx,cy,w,h + class scores",
    score_threshold=0.25,
    iou_threshold=0.7,
    **_UPSTREAM,
)
def decode_yolov8(outputs: dict[str, np.ndarray], context: DecodeContext) -> Detections:
    rows = single_output(outputs, "yolov8").T  # (N, 4 + C)
    scores, class_ids = best_class(rows[:, 4:])
    return finish(context, cxcywh_to_xyxy(rows[:, :4]), scores, class_ids)


@register_decoder(
    "yolov5",
    task="detection",
    summary="Ultralytics YOLOv5 ONNX: [1, N, 5+C] cx,cy,w,h, objectness, class probabilities",
    score_threshold=0.25,
    iou_threshold=0.45,
    **_UPSTREAM,
)
def decode_yolov5(outputs: dict[str, np.ndarray], context: DecodeContext) -> Detections:
    rows = single_output(outputs, "yolov5")  # (N, 5 + C)
    scores, class_ids = best_class(rows[:, 5:] * rows[:, 4:5])
    return finish(context, cxcywh_to_xyxy(rows[:, :4]), scores, class_ids)
