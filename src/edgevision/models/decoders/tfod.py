"""TensorFlow Object Detection API exports, post-processing inside the graph (``tfod-ssd``).

Saved models converted with tf2onnx give ``detection_boxes`` ``[1, K, 4]`` (ymin, xmin,
ymax, xmax, normalised to the input image), ``detection_scores`` ``[1, K]``,
``detection_classes`` ``[1, K]`` (1-based COCO category ids) and ``num_detections``;
``TFLite_Detection_PostProcess`` exports give the same four as ``:0`` boxes, ``:1`` classes
(0-based: add ``class_offset`` 1 to reach the COCO id), ``:2`` scores, ``:3`` count. The
input is uint8 RGB of any size (the resizer is in the graph), so images go in unresized.
"""

from __future__ import annotations

import numpy as np

from edgevision.errors import EdgevisionError
from edgevision.models.decoders import DecodeContext, finish, register_decoder
from edgevision.types import Detections

ROLES = ("boxes", "scores", "classes", "count")
_TF_NAMES = {"boxes": "detection_boxes", "scores": "detection_scores", "classes": "detection_classes"}
_TF_NAMES["count"] = "num_detections"
_TFLITE_SUFFIX = {"boxes": "", "classes": ":1", "scores": ":2", "count": ":3"}
TFLITE_NAME = "TFLite_Detection_PostProcess"


def output_roles(names: list[str], overrides: dict[str, str] | None = None) -> dict[str, str] | None:
    """``{role: output name}`` for a TF-OD-API export's outputs; None when they are not one.

    ``detection_boxes`` matches ``detection_boxes``, ``detection_boxes:0`` and
    ``.../detection_boxes``, never ``raw_detection_boxes`` (TF2 exports have both).
    """
    found = {}
    for role in ROLES:
        for name in names:
            base = name.split(":")[0].rsplit("/", 1)[-1]
            if base == _TF_NAMES[role] or name == TFLITE_NAME + _TFLITE_SUFFIX[role]:
                found[role] = name
                break
    found.update(overrides or {})
    return found if {"boxes", "scores", "classes"} <= set(found) else None


@register_decoder(
    "tfod-ssd",
    task="detection",
    summary="TF Object Detection API: detection_boxes/scores/classes/num_detections (NMS inside)",
    resize="native",
    color="rgb",
    mean=0.0,
    std=1.0,
    labels="coco91",
    score_threshold=0.3,
    iou_threshold=0.6,
)
def decode_tfod(outputs: dict[str, np.ndarray], context: DecodeContext) -> Detections:
    roles = output_roles(list(outputs), context.card.outputs)
    if roles is None:
        raise EdgevisionError(
            f"the tfod-ssd decoder expects detection_boxes, detection_scores and detection_classes outputs, "
            f"got {', '.join(outputs)}; name them in the card's outputs field."
        )
    boxes = np.asarray(outputs[roles["boxes"]], np.float32).reshape(-1, 4)
    scores = np.asarray(outputs[roles["scores"]], np.float32).reshape(-1)
    classes = np.asarray(outputs[roles["classes"]]).reshape(-1)
    if "count" in roles:
        count = int(np.asarray(outputs[roles["count"]]).reshape(-1)[0])
        boxes, scores, classes = boxes[:count], scores[:count], classes[:count]
    w, h = context.input_size
    xyxy = boxes[:, [1, 0, 3, 2]] * np.array([w, h, w, h], np.float32)
    class_ids = np.rint(classes).astype(np.int64) + context.card.class_offset
    return finish(context, xyxy, scores, class_ids, suppress=False)
