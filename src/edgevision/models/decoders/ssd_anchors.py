"""SSD heads without post-processing (``ssd-anchors``): box regressors + class logits per anchor.

The anchors are described in the card's ``anchors`` field with MediaPipe's
``SsdAnchorsCalculatorOptions`` names (``strides``, ``min_scale``, ``max_scale``,
``aspect_ratios``, ``reduce_boxes_in_lowest_layer`` ...) plus the box coding
(``box_scales``, default 10, 10, 5, 5; ``exponential_size``, default true). Class 0 is
the background when the first label is ``background`` or ``???``.
"""

from __future__ import annotations

import functools

import numpy as np

from edgevision.errors import EdgevisionError
from edgevision.models.decoders import DecodeContext, finish, register_decoder
from edgevision.models.ops import sigmoid
from edgevision.models.ssd import BoxCoding, SsdAnchorOptions, decode_boxes, ssd_anchors
from edgevision.types import Detections

_CODING_KEYS = {"box_scales", "exponential_size", "reverse_output_order"}


@register_decoder(
    "ssd-anchors",
    task="detection",
    summary="SSD boxes [1, A, 4] + logits [1, A, C] over anchors described in the card",
    input_size=(300, 300),
    resize="stretch",
    color="rgb",
    mean=127.5,
    std=127.5,
    labels="coco91",
    score_threshold=0.4,
    iou_threshold=0.5,
)
def decode_ssd_anchors(outputs: dict[str, np.ndarray], context: DecodeContext) -> Detections:
    anchors, coding = _anchors(context)
    count = len(anchors)
    tensors = [np.asarray(t, np.float32).reshape(count, -1) for t in outputs.values() if t.size % count == 0]
    boxes = [t for t in tensors if t.shape[1] == 4]
    logits = [t for t in tensors if t.shape[1] != 4]
    if len(boxes) != 1 or len(logits) != 1:
        raise EdgevisionError(
            f"the ssd-anchors decoder expects boxes [1, {count}, 4] and logits [1, {count}, C] for the card's "
            f"{count} anchors, got {[list(t.shape) for t in outputs.values()]}."
        )
    scores = sigmoid(logits[0].astype(np.float64)).astype(np.float32)
    if context.class_names and context.class_names[0].lower() in ("background", "???"):
        scores[:, 0] = 0.0
    class_ids = scores.argmax(axis=1)
    best = scores[np.arange(count), class_ids]
    xyxy = decode_boxes(boxes[0], anchors, coding) * np.array(context.input_size * 2, np.float32)
    return finish(context, xyxy, best, class_ids)


def _anchors(context: DecodeContext) -> tuple[np.ndarray, BoxCoding]:
    options = dict(context.card.anchors or {})
    if "strides" not in options or "min_scale" not in options or "max_scale" not in options:
        raise EdgevisionError(
            "the ssd-anchors decoder needs the card's anchors field with strides, min_scale and max_scale."
        )
    coding = BoxCoding(
        scales=tuple(options.get("box_scales", (10.0, 10.0, 5.0, 5.0))),
        exponential_size=bool(options.get("exponential_size", True)),
        reverse_output_order=bool(options.get("reverse_output_order", False)),
    )
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items() if k not in _CODING_KEYS}
    try:
        anchor_options = SsdAnchorOptions(input_size=tuple(context.input_size), **fields)
    except TypeError as exc:
        raise EdgevisionError(f"the card's anchors field has an unknown key: {exc}.") from None
    return _cached_anchors(anchor_options), coding


@functools.lru_cache(maxsize=8)
def _cached_anchors(options: SsdAnchorOptions) -> np.ndarray:
    return ssd_anchors(options)
