"""Recognising other tools' exports from their tensors and metadata, with no card given.

Recognised: a card embedded by edgevision; Ultralytics YOLOv5 / YOLOv8 / YOLO11 ONNX (with
or without ``metadata_props``); TensorFlow Object Detection API outputs (tf2onnx and
TFLite names); official YOLOX ONNX (decoded or not); NanoDet-Plus; already-decoded
``[N, 6]`` / ``[N, 7]`` detections and boxes + scores pairs. Shapes decide between the
grid formats: YOLOX and YOLOv8 have one row per cell of strides 8, 16, 32, YOLOv5 three,
NanoDet-Plus one per cell of strides 8 to 64.

>>> from edgevision.types import TensorSpec
>>> found = recognise([TensorSpec("images", (1, 3, 640, 640), "float32")],
...                   [TensorSpec("output0", (1, 84, 8400), "float32")], {})
>>> found.card.decoder, found.card.labels
('yolov8', 'coco80')
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from edgevision.models.card import METADATA_KEY, ModelCard, card_from_json
from edgevision.models.decoders import anchor_free_count
from edgevision.models.decoders.tfod import TFLITE_NAME, output_roles
from edgevision.types import TensorSpec

_SIDES = tuple(range(160, 1281, 32))  # square sizes tried when the input size is dynamic


@dataclass(frozen=True)
class Recognition:
    """The card a model was recognised with, and a few words on what gave it away."""

    card: ModelCard
    evidence: str


def recognise(inputs: list[TensorSpec], outputs: list[TensorSpec], metadata: dict[str, str]) -> Recognition | None:
    """The card for a model with these tensors and metadata; None when nothing fits."""
    if METADATA_KEY in metadata:
        return Recognition(card_from_json(metadata[METADATA_KEY], "the model's metadata"), "its metadata")
    for rule in (_tfod, _ultralytics, _by_shape):
        found = rule(inputs, outputs, metadata)
        if found is not None:
            return found
    return None


def _labels(count: int) -> str | list[str]:
    """COCO's 80 names for 80 classes; numbered names otherwise (a card or metadata names them)."""
    return "coco80" if count == 80 else [f"class {i}" for i in range(count)]


def _tfod(inputs, outputs, metadata) -> Recognition | None:
    names = [o.name for o in outputs]
    roles = output_roles(names)
    if roles is None:
        return None
    if roles["boxes"].startswith(TFLITE_NAME):
        image = inputs[0]
        fields = {"class_offset": 1}
        if image.dtype.startswith("float"):
            fields.update(resize="stretch", mean=127.5, std=127.5)
        return Recognition(
            ModelCard(decoder="tfod-ssd", **fields), "TFLite_Detection_PostProcess outputs (0-based classes)"
        )
    return Recognition(
        ModelCard(decoder="tfod-ssd"), "TF Object Detection API outputs (" + ", ".join(roles.values()) + ")"
    )


def _ultralytics(inputs, outputs, metadata) -> Recognition | None:
    if "Ultralytics" not in metadata.get("author", "") and not {"names", "stride"} <= set(metadata):
        return None
    task = metadata.get("task", "detect")
    if task != "detect" or len(outputs) != 1:
        return None
    names = _names(metadata.get("names", ""))
    size = _imgsz(metadata.get("imgsz", ""))
    shape = outputs[0].shape
    if len(shape) != 3:
        return None
    fields = {"labels": names or None}
    if size and not all(inputs[0].shape[2:]):
        fields["input_size"] = size
    count = len(names) if names else None
    if shape[-1] == 6:
        decoder = "boxes-scores"
    elif shape[1] and shape[2] and shape[1] < shape[2] and (count is None or shape[1] == 4 + count):
        decoder = "yolov8"
    else:
        decoder = "yolov5"
    evidence = f"Ultralytics metadata (task {task}, {count or 'no'} names" + (
        f", imgsz {size[0]}x{size[1]})" if size else ")"
    )
    return Recognition(ModelCard(decoder=decoder, **{k: v for k, v in fields.items() if v}), evidence)


def _names(text: str) -> list[str]:
    try:
        value = ast.literal_eval(text) if text else {}
    except (ValueError, SyntaxError):
        return []
    if isinstance(value, dict):
        return [str(value[k]) for k in sorted(value)]
    return [str(v) for v in value] if isinstance(value, list) else []


def _imgsz(text: str) -> tuple[int, int] | None:
    try:
        value = ast.literal_eval(text) if text else None
    except (ValueError, SyntaxError):
        return None
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, list | tuple) and len(value) == 2:
        return (int(value[1]), int(value[0]))  # Ultralytics writes [height, width]
    return None


def _image_size(spec: TensorSpec) -> tuple[int, int] | None:
    shape = spec.shape
    if len(shape) != 4:
        return None
    h, w = (shape[2], shape[3]) if shape[1] == 3 and shape[3] != 3 else (shape[1], shape[2])
    return (w, h) if w and h else None


def _sizes(spec: TensorSpec) -> list[tuple[int, int]]:
    size = _image_size(spec)
    return [size] if size else [(s, s) for s in _SIDES]


def _by_shape(inputs, outputs, metadata) -> Recognition | None:
    if not inputs:
        return None
    shapes = [tuple(o.shape) for o in outputs]
    if len(shapes) == 2:
        return _boxes_and_scores(outputs)
    if len(shapes) != 1:
        return None
    shape = shapes[0]
    if len(shape) in (2, 3) and shape[-1] in (6, 7) and (len(shape) == 2 or shape[0] == 1):
        layout = "x1,y1,x2,y2,score,class" if shape[-1] == 6 else "batch,x1,y1,x2,y2,class,score"
        return Recognition(ModelCard(decoder="boxes-scores"), f"one decoded-detections output {list(shape)} ({layout})")
    if len(shape) != 3 or shape[0] != 1 or not shape[1] or not shape[2]:
        return None
    return _grid_format(shape, _sizes(inputs[0]), _image_size(inputs[0]) is None)


def _grid_format(shape, sizes, dynamic: bool) -> Recognition | None:
    _, a, b = shape
    for size in sizes:
        cells = anchor_free_count(size, (8, 16, 32))
        extra = {"input_size": size} if dynamic else {}
        where = f"{size[0]}x{size[1]}" + (" (the input is dynamic)" if dynamic else "")
        if a == cells and b > 5:
            card = ModelCard(decoder="yolox", labels=_labels(b - 5), **extra)
            return Recognition(
                card,
                f"one output [1, {a}, {b}]: a row per cell of strides 8-32 at {where}, 5 + {b - 5} columns (YOLOX)",
            )
        if a == 3 * cells and b > 5:
            card = ModelCard(decoder="yolov5", labels=_labels(b - 5), **extra)
            return Recognition(card, f"one output [1, {a}, {b}]: three anchors per cell at {where} (YOLOv5)")
        if b == cells and 4 < a < b:
            card = ModelCard(decoder="yolov8", labels=_labels(a - 4), **extra)
            return Recognition(
                card, f"one output [1, {a}, {b}]: 4 + {a - 4} rows per cell of strides 8-32 at {where} (YOLOv8/YOLO11)"
            )
        if a == anchor_free_count(size, (8, 16, 32, 64), ceil=True) and b > 32:
            card = ModelCard(decoder="nanodet-plus", labels=_labels(b - 32), **extra)
            return Recognition(
                card,
                f"one output [1, {a}, {b}]: a row per cell of strides 8-64 at {where}, {b - 32} classes + 32 (NanoDet-Plus)",
            )
    return None


_RAW_HEAD = ("raw", "encoding", "regress", "delta", "anchor", "loc")  # undecoded SSD / RetinaNet heads


def _boxes_and_scores(outputs) -> Recognition | None:
    """Decoded ``boxes`` [1, N, 4] + ``scores`` [1, N, C]; raw heads (box encodings) are left raw.

    Shapes cannot tell decoded boxes from anchor offsets, so the names must say "box" and
    "score" (or conf, prob, class) and nothing of an undecoded head.
    """
    boxes = [o for o in outputs if len(o.shape) == 3 and o.shape[-1] == 4 and "box" in o.name.lower()]
    if len(boxes) != 1 or any(word in o.name.lower() for o in outputs for word in _RAW_HEAD):
        return None
    other = next(o for o in outputs if o is not boxes[0])
    if not any(word in other.name.lower() for word in ("score", "conf", "prob", "cls", "class")):
        return None
    if len(other.shape) not in (2, 3) or other.shape[1] != boxes[0].shape[1]:
        return None
    classes = other.shape[2] if len(other.shape) == 3 else 1
    card = ModelCard(decoder="boxes-scores", labels=_labels(classes or 0))
    return Recognition(
        card, f"outputs {boxes[0].name} {list(boxes[0].shape)} and {other.name} {list(other.shape)} (boxes + scores)"
    )
