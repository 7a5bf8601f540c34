"""Tiny ONNX stand-ins for third-party detector exports, with planted, known detections.

Each ``build_<format>(folder, **options) -> Planted`` writes a model whose input and output
names, shapes, dtypes and metadata equal those of one upstream export, and whose outputs
hold a few planted objects (plus a lower-scored duplicate of each, for NMS to remove, and
low-scored background rows). ``Planted.expected`` lists the objects a correct decoder
finds, boxes in model-input pixels; ``Planted.preprocess`` says how upstream prepares an
image, so a decoder test can map the boxes back to source pixels by hand.

The graphs are real: every output goes through a Conv on the input (its result times 0
is added to the planted values), so a NaN image makes NaN outputs and a quantizer sees
Conv ops. The SSD builders route their candidates through Loop, NonMaxSuppression, TopK
and Gather, as tf2onnx exports of the TF Object Detection API do.

>>> planted = build_yolov8(tmp_path, imgsz=320)                  # doctest: +SKIP
>>> planted.expected[0]                                          # doctest: +SKIP
PlantedObject(class_id=0, class_name='person', score=0.91, box=(48.0, 64.0, 128.0, 272.0))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgevision.models.coco import COCO80_CLASSES

# COCO category id (1..90 with gaps, as in the TF Object Detection API label map) of each
# of the 80 classes, in COCO80_CLASSES order.
COCO91_IDS: tuple[int, ...] = (
    *range(1, 12),
    *range(13, 26),
    27,
    28,
    *range(31, 45),
    *range(46, 66),
    67,
    70,
    *range(72, 83),
    *range(84, 91),
)
SEED = 0


class PlantedObject(NamedTuple):
    """One object a correct decoder must find; ``box`` is xyxy in model-input pixels."""

    class_id: int  # in the model's own label space (see ``Planted.label_space``)
    class_name: str
    score: float
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class Preprocess:
    """How upstream turns an image into the input tensor; mean and std in 0-255 units."""

    resize: str  # "letterbox-center" | "letterbox-corner" | "stretch" | "native" (resizer in the graph)
    color: str  # "RGB" | "BGR"
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pad_value: int | None = None  # letterbox padding, in 0-255 pixel units
    layout: str = "NCHW"
    dtype: str = "float32"


@dataclass(frozen=True)
class Planted:
    """A written model and what it must decode to."""

    path: Path
    input_size: tuple[int, int]  # (width, height) of the model input (nominal for "native")
    preprocess: Preprocess
    expected: list[PlantedObject]
    label_space: str  # "coco80" (0-based), "coco91" (1-based category ids), "coco91-1" (category id - 1)


ULTRALYTICS_PRE = Preprocess("letterbox-center", "RGB", (0.0, 0.0, 0.0), (255.0, 255.0, 255.0), pad_value=114)
YOLOX_PRE = Preprocess("letterbox-corner", "BGR", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), pad_value=114)
NANODET_PRE = Preprocess("stretch", "BGR", (103.53, 116.28, 123.675), (57.375, 57.12, 58.395))
TF_SSD_PRE = Preprocess("native", "RGB", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), layout="NHWC", dtype="uint8")
TFLITE_SSD_PRE = Preprocess("stretch", "RGB", (127.5, 127.5, 127.5), (127.5, 127.5, 127.5), layout="NHWC")

# Default objects, xyxy as fractions of the input: (class index in COCO80, score, box).
_DEFAULT_OBJECTS: tuple[tuple[int, float, tuple[float, float, float, float]], ...] = (
    (0, 0.91, (0.15, 0.20, 0.40, 0.85)),  # person
    (16, 0.83, (0.50, 0.55, 0.80, 0.88)),  # dog
    (2, 0.62, (0.60, 0.08, 0.92, 0.30)),  # car
    (9, 0.47, (0.05, 0.05, 0.09, 0.14)),  # traffic light, small enough for stride 8
)
# NanoDet boxes are whole numbers of strides from a prior, so they are given in pixels of
# the 416 input, one object per level (strides 8, 16, 32, 64).
_NANODET_OBJECTS: tuple[tuple[int, float, tuple[float, float, float, float]], ...] = (
    (2, 0.64, (48.0, 40.0, 96.0, 88.0)),  # car, stride 8
    (16, 0.83, (192.0, 224.0, 384.0, 400.0)),  # dog, stride 16
    (0, 0.91, (32.0, 160.0, 160.0, 416.0)),  # person, stride 32
    (5, 0.72, (192.0, 0.0, 384.0, 192.0)),  # bus, stride 64
)

Objects = Sequence[tuple[int, float, tuple[float, float, float, float]]]


# ---------------------------------------------------------------- graph building


class _Graph:
    """A list of nodes and initializers, with one call per op."""

    def __init__(self, prefix: str = "") -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[TensorProto] = []
        self._prefix = prefix  # subgraph names must not shadow the outer graph's
        self._count = 0

    def _name(self, kind: str) -> str:
        self._count += 1
        return f"{self._prefix}{kind}_{self._count}"

    def const(self, array, dtype=np.float32) -> str:
        name = self._name("const")
        self.inits.append(numpy_helper.from_array(np.asarray(array, dtype=dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, out: str | None = None, n_out: int = 1, **attrs):
        outs = (
            [out or self._name(op_type.lower())] if n_out == 1 else [self._name(op_type.lower()) for _ in range(n_out)]
        )
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=self._name(op_type), **attrs))
        return outs[0] if n_out == 1 else outs

    def zero_from(self, image: str, *, nhwc: bool = False, uint8: bool = False) -> str:
        """A ``[1, 1, 1]`` zero that depends on ``image`` through a Conv (NaN in, NaN out)."""
        x = self.op("Cast", image, to=TensorProto.FLOAT) if uint8 else image
        x = self.op("Transpose", x, perm=[0, 3, 1, 2]) if nhwc else x
        weights = np.random.default_rng(SEED).normal(0, 0.1, (4, 3, 3, 3))
        y = self.op("Conv", x, self.const(weights), self.const(np.zeros(4)), strides=[2, 2], pads=[1, 1, 1, 1])
        y = self.op("ReduceMean", self.op("Relu", y), axes=[1, 2, 3], keepdims=1)
        y = self.op("Reshape", y, self.const([1, 1, 1], np.int64))
        return self.op("Mul", y, self.const(0.0))

    def planted(self, values: np.ndarray, zero: str, out: str | None = None) -> str:
        """``values + zero``: a planted tensor that still depends on the input."""
        return self.op("Add", self.const(values), zero, out=out)


def _tensor(name: str, dtype: int, shape: Sequence[int | str] | None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, None if shape is None else list(shape))


@dataclass(frozen=True)
class _ModelInfo:
    inputs: list[onnx.ValueInfoProto]
    outputs: list[onnx.ValueInfoProto]
    opset: int
    producer: tuple[str, str] = ("pytorch", "2.1.0")
    metadata: dict[str, str] | None = None


def _save(graph: _Graph, info: _ModelInfo, path: Path) -> Path:
    onnx_graph = helper.make_graph(graph.nodes, "main_graph", info.inputs, info.outputs, graph.inits)
    model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", info.opset)])
    model.producer_name, model.producer_version = info.producer
    model.ir_version = min(model.ir_version, 8)
    if info.metadata:
        helper.set_model_props(model, info.metadata)
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


# ---------------------------------------------------------------- planted objects


def _objects(objects: Objects | None, size: tuple[int, int], nc: int = 80) -> list[tuple[int, float, np.ndarray]]:
    """``(class index, score, xyxy pixels)``; defaults scaled to ``size``, classes folded into ``nc``."""
    if objects is not None:
        return [(int(c), float(s), np.asarray(b, dtype=np.float64)) for c, s, b in objects]
    scale = np.array([size[0], size[1], size[0], size[1]], dtype=np.float64)
    return [(c % nc, s, np.round(np.asarray(b) * scale, 1)) for c, s, b in _DEFAULT_OBJECTS]


def _expected(objects, names: Sequence[str], *, ids: Sequence[int] | None = None) -> list[PlantedObject]:
    """The planted objects, best score first, with ``ids`` mapping class index -> emitted id."""
    rows = [PlantedObject(ids[c] if ids else c, names[c], float(s), tuple(float(v) for v in b)) for c, s, b in objects]
    return sorted(rows, key=lambda o: -o.score)


def _levels(imgsz: int, strides: Sequence[int], *, ceil: bool = False) -> list[tuple[int, int, int]]:
    """``(stride, grid side, first row)`` of each level, grids square and row-major."""
    levels, start = [], 0
    for s in strides:
        side = math.ceil(imgsz / s) if ceil else imgsz // s
        levels.append((s, side, start))
        start += side * side
    return levels


def _pick_level(box: np.ndarray, levels: list[tuple[int, int, int]]) -> tuple[int, int, int]:
    """The finest level whose stride is at least 1/8 of the box's longer side."""
    longest = max(box[2] - box[0], box[3] - box[1])
    return next((lv for lv in levels if longest <= 8 * lv[0]), levels[-1])


def _cell(box: np.ndarray, level: tuple[int, int, int], *, shift: int = 0) -> tuple[int, int, int]:
    """``(row index in the output, grid x, grid y)`` of the cell holding the box centre (+ ``shift`` in x)."""
    s, side, start = level
    gx = min(int((box[0] + box[2]) / 2 // s), side - 1)
    gy = min(int((box[1] + box[3]) / 2 // s), side - 1)
    gx = gx + shift if 0 <= gx + shift < side else gx - shift
    return start + gy * side + gx, gx, gy


def _cxcywh(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box[2] - box[0], box[3] - box[1]])


def _split_score(score: float) -> tuple[float, float]:
    """Objectness and class probability whose product is ``score``."""
    obj = (1.0 + score) / 2
    return obj, score / obj


def _names_repr(names: Sequence[str]) -> str:
    return str(dict(enumerate(names)))


def _class_names(nc: int) -> list[str]:
    """COCO names for the first ``nc`` classes, Ultralytics' ``class{i}`` beyond 80."""
    return [COCO80_CLASSES[i] if i < 80 else f"class{i}" for i in range(nc)]


# ---------------------------------------------------------------- Ultralytics


def _ultralytics_metadata(imgsz: int, names: Sequence[str], *, nms: bool, model_name: str) -> dict[str, str]:
    """``metadata_props`` as ``Exporter.export_onnx`` writes them: ``str()`` of each value."""
    return {
        "description": f"Ultralytics {model_name} model trained on coco.yaml",
        "author": "Ultralytics",
        "date": "2025-01-01T00:00:00.000000",
        "version": "8.3.0",
        "license": "AGPL-3.0 License (https://ultralytics.com/license)",
        "docs": "https://docs.ultralytics.com",
        "stride": "32",
        "task": "detect",
        "batch": "1",
        "imgsz": str([imgsz, imgsz]),
        "names": _names_repr(names),
        "args": str({"batch": 1, "half": False, "dynamic": False, "simplify": True, "opset": None, "nms": nms}),
        "channels": "3",
    }


def build_yolov8(
    folder: Path, *, imgsz: int = 640, nc: int = 80, with_metadata: bool = True, objects: Objects | None = None
) -> Planted:
    """Ultralytics YOLOv8 / YOLO11 ``yolo export format=onnx``: ``images`` -> ``output0`` [1, 4+nc, A].

    Mirrors ``Detect`` in export mode: rows cx, cy, w, h (input pixels), then nc sigmoid
    class scores, no objectness; A = anchors over strides 8, 16, 32 (8400 at 640).
    """
    rng = np.random.default_rng(SEED)
    levels = _levels(imgsz, (8, 16, 32))
    anchors = sum(side * side for _, side, _ in levels)
    out = np.zeros((4 + nc, anchors), dtype=np.float32)
    out[:2] = rng.uniform(0, imgsz, (2, anchors))
    out[2:4] = rng.uniform(8, imgsz / 4, (2, anchors))
    out[4:] = rng.uniform(0, 0.02, (nc, anchors))
    objs = _objects(objects, (imgsz, imgsz), nc)
    for c, score, box in objs:
        for shift, value in ((0, score), (1, 0.8 * score)):  # the object, then a duplicate beside it
            row, _, _ = _cell(box, _pick_level(box, levels), shift=shift)
            out[:4, row] = _cxcywh(box)
            out[4 + c, row] = value
    graph = _Graph()
    zero = graph.zero_from("images")
    # As the real head ends: cat(boxes in pixels, sigmoid(class logits)) on the channel axis.
    logits = np.log(np.clip(out[4:], 1e-6, 1 - 1e-6) / (1 - np.clip(out[4:], 1e-6, 1 - 1e-6)))
    scores = graph.op("Sigmoid", graph.planted(logits[None].astype(np.float32), zero))
    graph.op("Concat", graph.planted(out[None, :4], zero), scores, out="output0", axis=1)
    names = _class_names(nc)
    meta = _ultralytics_metadata(imgsz, names, nms=False, model_name="YOLOv8n") if with_metadata else None
    info = _ModelInfo(
        [_tensor("images", TensorProto.FLOAT, [1, 3, imgsz, imgsz])],
        [_tensor("output0", TensorProto.FLOAT, [1, 4 + nc, anchors])],
        opset=17,
        metadata=meta,
    )
    path = _save(graph, info, Path(folder) / "yolov8n.onnx")
    return Planted(path, (imgsz, imgsz), ULTRALYTICS_PRE, _expected(objs, names), "coco80")


def build_yolov5(folder: Path, *, imgsz: int = 640, nc: int = 80, objects: Objects | None = None) -> Planted:
    """Ultralytics YOLOv5 ``export.py --include onnx``: ``images`` -> ``output0`` [1, 3*A, 5+nc].

    Mirrors ``Detect`` (v7.0): per level (strides 8, 16, 32) rows are anchor-major then
    row-major cells; columns cx, cy, w, h (input pixels), objectness, nc class
    probabilities, all after sigmoid. 25200 rows at 640. Metadata: ``stride``, ``names``.
    """
    rng = np.random.default_rng(SEED)
    levels = _levels(imgsz, (8, 16, 32))
    cells = sum(side * side for _, side, _ in levels)
    out = np.zeros((3 * cells, 5 + nc), dtype=np.float32)
    out[:, :2] = rng.uniform(0, imgsz, (3 * cells, 2))
    out[:, 2:4] = rng.uniform(8, imgsz / 4, (3 * cells, 2))
    out[:, 4] = rng.uniform(0, 0.02, 3 * cells)
    out[:, 5:] = rng.uniform(0, 0.5, (3 * cells, nc))
    objs = _objects(objects, (imgsz, imgsz), nc)
    for c, score, box in objs:
        s, side, start = _pick_level(box, levels)
        _, gx, gy = _cell(box, (s, side, start))
        for anchor, value in ((1, score), (0, 0.8 * score)):  # the object, then a duplicate on another anchor
            row = 3 * start + anchor * side * side + gy * side + gx
            obj, cls = _split_score(value)
            out[row, :5] = (*_cxcywh(box), obj)
            out[row, 5:] = 0.01
            out[row, 5 + c] = cls
    graph = _Graph()
    graph.planted(out[None], graph.zero_from("images"), out="output0")
    names = _class_names(nc)
    info = _ModelInfo(
        [_tensor("images", TensorProto.FLOAT, [1, 3, imgsz, imgsz])],
        [_tensor("output0", TensorProto.FLOAT, [1, 3 * cells, 5 + nc])],
        opset=17,
        metadata={"stride": "32", "names": _names_repr(names)},
    )
    path = _save(graph, info, Path(folder) / "yolov5s.onnx")
    return Planted(path, (imgsz, imgsz), ULTRALYTICS_PRE, _expected(objs, names), "coco80")


def build_ultralytics_nms(
    folder: Path, *, imgsz: int = 640, max_det: int = 300, objects: Objects | None = None
) -> Planted:
    """Ultralytics ``yolo export format=onnx nms=True``: ``output0`` [1, max_det, 6] x1, y1, x2, y2, score, class.

    Rows after the embedded NMS, best score first, zero rows after the last detection.
    The NMS itself is not in this graph: the rows are planted after it.
    """
    objs = _objects(objects, (imgsz, imgsz))
    expected = _expected(objs, COCO80_CLASSES)
    out = np.zeros((max_det, 6), dtype=np.float32)
    for i, obj in enumerate(expected):
        out[i] = (*obj.box, obj.score, obj.class_id)
    graph = _Graph()
    graph.planted(out[None], graph.zero_from("images"), out="output0")
    info = _ModelInfo(
        [_tensor("images", TensorProto.FLOAT, [1, 3, imgsz, imgsz])],
        [_tensor("output0", TensorProto.FLOAT, [1, max_det, 6])],
        opset=17,
        metadata=_ultralytics_metadata(imgsz, COCO80_CLASSES, nms=True, model_name="YOLO11n"),
    )
    path = _save(graph, info, Path(folder) / "yolo11n-nms.onnx")
    return Planted(path, (imgsz, imgsz), ULTRALYTICS_PRE, expected, "coco80")


# ---------------------------------------------------------------- YOLOX


YOLOX_STRIDES = (8, 16, 32)


def build_yolox(folder: Path, *, decoded: bool = False, imgsz: int = 416, objects: Objects | None = None) -> Planted:
    """Official YOLOX ``tools/export_onnx.py``: ``images`` [1, 3, 416, 416] -> ``output`` [1, 3549, 85].

    Rows: strides 8, 16, 32 concatenated, row-major cells. ``decoded=False`` (the default
    export): columns 0-1 are offsets from the cell, 2-3 log(size / stride); decoded=True
    (``--decode_in_inference``): cx, cy, w, h in input pixels. Then objectness and 80
    class probabilities, both after sigmoid; score = objectness x class.
    """
    objs = _objects(objects, (imgsz, imgsz))
    graph = _Graph()
    graph.planted(_yolox_rows(objs, imgsz, decoded=decoded)[None], graph.zero_from("images"), out="output")
    rows = sum(side * side for _, side, _ in _levels(imgsz, YOLOX_STRIDES))
    info = _ModelInfo(
        [_tensor("images", TensorProto.FLOAT, [1, 3, imgsz, imgsz])],
        [_tensor("output", TensorProto.FLOAT, [1, rows, 85])],
        opset=11,
    )
    path = _save(graph, info, Path(folder) / f"yolox_nano{'_decoded' if decoded else ''}.onnx")
    return Planted(path, (imgsz, imgsz), YOLOX_PRE, _expected(objs, COCO80_CLASSES), "coco80")


def _yolox_rows(objs, imgsz: int, *, decoded: bool) -> np.ndarray:
    rng = np.random.default_rng(SEED)
    levels = _levels(imgsz, YOLOX_STRIDES)
    rows = sum(side * side for _, side, _ in levels)
    out = np.zeros((rows, 85), dtype=np.float32)
    out[:, :2] = rng.uniform(-0.5, 1.5, (rows, 2))
    out[:, 2:4] = rng.uniform(-1, 2, (rows, 2))
    out[:, 4] = rng.uniform(0, 0.02, rows)
    out[:, 5:] = rng.uniform(0, 0.5, (rows, 80))
    if decoded:
        for s, side, start in levels:
            grid = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2)
            block = out[start : start + side * side]
            block[:, :2] = (block[:, :2] + grid) * s
            block[:, 2:4] = np.exp(block[:, 2:4]) * s
    for c, score, box in objs:
        level = _pick_level(box, levels)
        for shift, value in ((0, score), (1, 0.8 * score)):  # the object, then a duplicate beside it
            row, gx, gy = _cell(box, level, shift=shift)
            cx, cy, w, h = _cxcywh(box)
            s = level[0]
            coded = (cx, cy, w, h) if decoded else (cx / s - gx, cy / s - gy, math.log(w / s), math.log(h / s))
            obj, cls = _split_score(value)
            out[row, :5] = (*coded, obj)
            out[row, 5:] = 0.01
            out[row, 5 + c] = cls
    return out


def build_two_output(folder: Path, *, imgsz: int = 416, objects: Objects | None = None) -> Planted:
    """edgevision's own YOLOX zoo export: ``boxes`` [1, N, 4] xyxy input pixels, ``scores`` [1, N, 80].

    Scores are objectness x class probability; no NMS in the graph.
    """
    objs = _objects(objects, (imgsz, imgsz))
    rows = _yolox_rows(objs, imgsz, decoded=True)
    boxes = np.concatenate([rows[:, :2] - rows[:, 2:4] / 2, rows[:, :2] + rows[:, 2:4] / 2], axis=1)
    scores = rows[:, 4:5] * rows[:, 5:]
    graph = _Graph()
    zero = graph.zero_from("images")
    graph.planted(boxes[None].astype(np.float32), zero, out="boxes")
    graph.planted(scores[None].astype(np.float32), zero, out="scores")
    info = _ModelInfo(
        [_tensor("images", TensorProto.FLOAT, [1, 3, imgsz, imgsz])],
        [
            _tensor("boxes", TensorProto.FLOAT, [1, len(rows), 4]),
            _tensor("scores", TensorProto.FLOAT, [1, len(rows), 80]),
        ],
        opset=17,
    )
    path = _save(graph, info, Path(folder) / "yolox_nano_two_output.onnx")
    return Planted(path, (imgsz, imgsz), YOLOX_PRE, _expected(objs, COCO80_CLASSES), "coco80")


# ---------------------------------------------------------------- NanoDet-Plus

NANODET_STRIDES = (8, 16, 32, 64)
NANODET_REG_MAX = 7


def build_nanodet_plus(folder: Path, *, imgsz: int = 416, objects: Objects | None = None) -> Planted:
    """NanoDet-Plus ``tools/export_onnx.py`` (nanodet-plus-m_416): ``data`` -> ``output`` [1, 3598, 112].

    Mirrors ``NanoDetPlusHead._forward_onnx``: rows over strides 8, 16, 32, 64 (grids
    ceil(416 / s)), row-major; columns 0-79 sigmoid class scores, 80-111 the box
    distribution as logits, sides left, top, right, bottom x 8 bins. Priors sit at
    (col * s, row * s), so planted boxes must be whole strides from a prior (ValueError if not).
    """
    rng = np.random.default_rng(SEED)
    levels = _levels(imgsz, NANODET_STRIDES, ceil=True)
    rows = sum(side * side for _, side, _ in levels)
    bins = NANODET_REG_MAX + 1
    out = np.zeros((rows, 80 + 4 * bins), dtype=np.float32)
    out[:, :80] = rng.uniform(0, 0.02, (rows, 80))
    out[:, 80:] = rng.normal(0, 1, (rows, 4 * bins))
    objs = _objects(objects if objects is not None else _NANODET_OBJECTS, (imgsz, imgsz))
    for c, score, box in objs:
        placements = _nanodet_placements(box, levels)
        for (row, sides), value in zip(placements[:2], (score, 0.8 * score)):  # object, then a duplicate
            out[row, 80:] = 0.0
            out[row, 80 + np.arange(4) * bins + np.asarray(sides)] = 20.0  # one sharp bin per side
            out[row, c] = value
    graph = _Graph()
    graph.planted(out[None], graph.zero_from("data"), out="output")
    info = _ModelInfo(
        [_tensor("data", TensorProto.FLOAT, [1, 3, imgsz, imgsz])],
        [_tensor("output", TensorProto.FLOAT, [1, rows, out.shape[1]])],
        opset=11,
    )
    path = _save(graph, info, Path(folder) / "nanodet-plus-m_416.onnx")
    return Planted(path, (imgsz, imgsz), NANODET_PRE, _expected(objs, COCO80_CLASSES), "coco80")


def _nanodet_placements(box: np.ndarray, levels) -> list[tuple[int, tuple[int, int, int, int]]]:
    """``(row, (l, t, r, b) in strides)`` of every prior that codes ``box`` exactly, coarsest level first."""
    for s, side, start in reversed(levels):
        if np.any(np.mod(box, s)):
            continue
        x1, y1, x2, y2 = (int(v) // s for v in box)
        priors = [
            (gx, gy)
            for gy in range(max(y1, 0), min(y2, side - 1) + 1)
            for gx in range(max(x1, 0), min(x2, side - 1) + 1)
            if max(gx - x1, gy - y1, x2 - gx, y2 - gy) <= NANODET_REG_MAX
        ]
        if priors:  # the prior nearest the box centre first
            priors.sort(key=lambda p: ((2 * p[0] - x1 - x2) ** 2 + (2 * p[1] - y1 - y2) ** 2, p[1], p[0]))
            return [(start + gy * side + gx, (gx - x1, gy - y1, x2 - gx, y2 - gy)) for gx, gy in priors]
    raise ValueError(f"box {box.tolist()} is not a whole number (<= 7) of strides from any NanoDet-Plus prior")


# ---------------------------------------------------------------- TF Object Detection API SSD (tf2onnx)


@dataclass(frozen=True)
class _PostProcess:
    """NMS settings of the SSD post-processing block."""

    max_det: int
    label_offset: float  # added to the 0-based class index to give the emitted class id
    iou_threshold: float = 0.6
    score_threshold: float = 0.3
    anchors: int = 1917  # ssdlite_mobilenet_v2 at 300x300
    classes: int = 90


def build_tf_ssd(
    folder: Path,
    *,
    input_name: str = "input_tensor",
    name_suffix: str = "",
    image_size: tuple[int, int] = (640, 480),
    objects: Objects | None = None,
) -> Planted:
    """TF OD API SSD (ssdlite_mobilenet_v2 saved_model) through tf2onnx: uint8 [1, H, W, 3] in.

    Outputs ``detection_boxes`` [1, 100, 4] (ymin, xmin, ymax, xmax in [0, 1] of the input
    image), ``detection_scores`` [1, 100] best first, ``detection_classes`` [1, 100]
    float COCO category ids, ``num_detections`` [1]; zeros after ``num_detections``.
    H and W are dynamic: the graph resizes to 300x300 itself. ``image_size`` only sets the
    pixel frame of ``expected`` (boxes scale with any input size).
    """
    names = {k: k + name_suffix for k in ("detection_boxes", "detection_scores", "detection_classes", "num_detections")}
    graph = _Graph()
    image = input_name + name_suffix
    resized = graph.op(
        "Resize",
        graph.op("Transpose", graph.op("Cast", image, to=TensorProto.FLOAT), perm=[0, 3, 1, 2]),
        "",
        "",
        graph.const([1, 3, 300, 300], np.int64),
        mode="linear",
    )
    normalised = graph.op("Sub", graph.op("Mul", resized, graph.const(1 / 127.5)), graph.const(1.0))
    objs = _objects(objects, image_size)
    post = _PostProcess(max_det=100, label_offset=1.0)
    _ssd_post_process(graph, graph.zero_from(normalised), _ssd_candidates(objs, image_size, post), post, names)
    info = _ModelInfo(
        [_tensor(image, TensorProto.UINT8, [1, "height", "width", 3])],
        _ssd_outputs(names, post.max_det),
        opset=15,
        producer=("tf2onnx", "1.16.1 15c810"),
    )
    path = _save(graph, info, Path(folder) / "ssdlite_mobilenet_v2.onnx")
    return Planted(path, image_size, TF_SSD_PRE, _expected(objs, COCO80_CLASSES, ids=COCO91_IDS), "coco91")


def build_tflite_ssd(folder: Path, *, objects: Objects | None = None) -> Planted:
    """The TFLite SSD layout (``TFLite_Detection_PostProcess``) in ONNX form.

    Input ``normalized_input_image_tensor`` float32 [1, 300, 300, 3] in [-1, 1]; outputs
    boxes [1, 10, 4] (ymin, xmin, ymax, xmax in [0, 1]), ``:1`` classes [1, 10] (category
    id - 1), ``:2`` scores [1, 10], ``:3`` count [1].
    """
    base = "TFLite_Detection_PostProcess"
    names = {
        "detection_boxes": base,
        "detection_classes": f"{base}:1",
        "detection_scores": f"{base}:2",
        "num_detections": f"{base}:3",
    }
    graph = _Graph()
    objs = _objects(objects, (300, 300))
    post = _PostProcess(max_det=10, label_offset=0.0)
    zero = graph.zero_from("normalized_input_image_tensor", nhwc=True)
    _ssd_post_process(graph, zero, _ssd_candidates(objs, (300, 300), post), post, names)
    info = _ModelInfo(
        [_tensor("normalized_input_image_tensor", TensorProto.FLOAT, [1, 300, 300, 3])],
        _ssd_outputs(names, post.max_det),
        opset=15,
        producer=("tf2onnx", "1.16.1 15c810"),
    )
    path = _save(graph, info, Path(folder) / "ssd_mobilenet_v1_tflite.onnx")
    ids = [i - 1 for i in COCO91_IDS]
    return Planted(path, (300, 300), TFLITE_SSD_PRE, _expected(objs, COCO80_CLASSES, ids=ids), "coco91-1")


def _ssd_outputs(names: dict[str, str], max_det: int) -> list[onnx.ValueInfoProto]:
    return [
        _tensor(names["detection_boxes"], TensorProto.FLOAT, [1, max_det, 4]),
        _tensor(names["detection_classes"], TensorProto.FLOAT, [1, max_det]),
        _tensor(names["detection_scores"], TensorProto.FLOAT, [1, max_det]),
        _tensor(names["num_detections"], TensorProto.FLOAT, [1]),
    ]


def _ssd_candidates(objs, size: tuple[int, int], post: _PostProcess) -> tuple[np.ndarray, np.ndarray]:
    """Candidate boxes [1, A, 4] (normalised y1, x1, y2, x2) and scores [1, classes, A]."""
    rng = np.random.default_rng(SEED)
    corner = rng.uniform(0, 0.8, (post.anchors, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(0.02, 0.2, (post.anchors, 2))], axis=1)
    scores = rng.uniform(0, 0.05, (post.classes, post.anchors))
    w, h = size
    slots = rng.choice(post.anchors, size=2 * len(objs), replace=False)
    for k, (c, score, box) in enumerate(objs):
        yxyx = np.array([box[1] / h, box[0] / w, box[3] / h, box[2] / w])
        category = COCO91_IDS[c] - 1  # TF OD API class index: category id - 1
        for slot, value, nudge in ((slots[2 * k], score, 0.0), (slots[2 * k + 1], 0.8 * score, 0.005)):
            boxes[slot] = yxyx + nudge  # the object, then a slightly moved duplicate
            scores[category, slot] = value
    return boxes[None].astype(np.float32), scores[None].astype(np.float32)


def _ssd_post_process(graph: _Graph, zero: str, candidates, post: _PostProcess, names: dict[str, str]) -> None:
    """Loop (per-image box clipping, as tf2onnx turns ``map_fn``), NMS, TopK, Gather and zero padding."""
    boxes = _per_image_clip(graph, graph.planted(candidates[0], zero))
    scores = graph.planted(candidates[1], zero)
    selected = graph.op(
        "NonMaxSuppression",
        boxes,
        scores,
        graph.const([post.max_det], np.int64),
        graph.const([post.iou_threshold]),
        graph.const([post.score_threshold]),
    )
    found = graph.op("GatherND", scores, selected)
    k = graph.op("Min", graph.op("Shape", found), graph.const([post.max_det], np.int64))
    top_scores, order = graph.op("TopK", found, k, axis=0, largest=1, sorted=1, n_out=2)
    top = graph.op("Gather", selected, order, axis=0)
    top_boxes = graph.op("GatherND", boxes, graph.op("Gather", top, graph.const([0, 2], np.int64), axis=1))
    classes = graph.op("Cast", graph.op("Gather", top, graph.const(1, np.int64), axis=1), to=TensorProto.FLOAT)
    classes = graph.op("Add", classes, graph.const(post.label_offset))
    missing = graph.op("Sub", graph.const([post.max_det], np.int64), k)
    zeros1, zeros2 = graph.const([0], np.int64), graph.const([0, 0], np.int64)
    axis0 = graph.const([0], np.int64)
    for value, pads, name in (
        (top_boxes, graph.op("Concat", zeros2, missing, zeros1, axis=0), "detection_boxes"),
        (top_scores, graph.op("Concat", zeros1, missing, axis=0), "detection_scores"),
        (classes, graph.op("Concat", zeros1, missing, axis=0), "detection_classes"),
    ):
        graph.op("Unsqueeze", graph.op("Pad", value, pads, graph.const(0.0)), axis0, out=names[name])
    graph.op("Cast", k, to=TensorProto.FLOAT, out=names["num_detections"])


def _per_image_clip(graph: _Graph, boxes: str) -> str:
    """A Loop over the batch whose body clips one image's boxes to [0, 1]."""
    body = _Graph(prefix="body/")
    body.op("Identity", "cond_in", out="cond_out")
    one_image = body.op("Gather", boxes, "i", axis=0)
    body.op("Clip", one_image, body.const(0.0), body.const(1.0), out="clipped")
    body_graph = helper.make_graph(
        body.nodes,
        "per_image",
        [_tensor("i", TensorProto.INT64, []), _tensor("cond_in", TensorProto.BOOL, [])],
        [_tensor("cond_out", TensorProto.BOOL, []), _tensor("clipped", TensorProto.FLOAT, None)],
        body.inits,
    )
    first = graph.op("Slice", graph.op("Shape", boxes), graph.const([0], np.int64), graph.const([1], np.int64))
    batch = graph.op("Squeeze", first, graph.const([0], np.int64))
    return graph.op("Loop", batch, graph.const(True, np.bool_), body=body_graph)


# ---------------------------------------------------------------- YOLOv7 end2end (ONNX Runtime NMS)


def build_yolov7_end2end(folder: Path, *, imgsz: int = 640, objects: Objects | None = None) -> Planted:
    """YOLOv7 ``export.py --grid --end2end --max-wh 640`` (``ONNX_ORT``): ``output`` [N, 7].

    Rows batch_id, x1, y1, x2, y2, class_id, score (input pixels), N dynamic. As in
    ``ONNX_ORT``: boxes cx, cy, w, h -> xyxy by a MatMul, classes offset by ``max_wh``
    for class-aware NonMaxSuppression, rows in NMS order (best score first).
    """
    rng = np.random.default_rng(SEED)
    objs = _objects(objects, (imgsz, imgsz))
    anchors = 3 * sum(side * side for _, side, _ in _levels(imgsz, (8, 16, 32)))
    raw = np.zeros((anchors, 85), dtype=np.float32)
    raw[:, :2] = rng.uniform(0, imgsz, (anchors, 2))
    raw[:, 2:4] = rng.uniform(8, imgsz / 4, (anchors, 2))
    raw[:, 4] = rng.uniform(0, 0.02, anchors)
    raw[:, 5:] = rng.uniform(0, 0.5, (anchors, 80))
    slots = rng.choice(anchors, size=2 * len(objs), replace=False)
    for k, (c, score, box) in enumerate(objs):
        for slot, value in ((slots[2 * k], score), (slots[2 * k + 1], 0.8 * score)):
            obj, cls = _split_score(value)
            raw[slot, :5] = (*_cxcywh(box), obj)
            raw[slot, 5:] = 0.01
            raw[slot, 5 + c] = cls
    graph = _Graph()
    _yolov7_ort_nms(graph, graph.planted(raw[None], graph.zero_from("images")), max_wh=640.0)
    info = _ModelInfo(
        [_tensor("images", TensorProto.FLOAT, [1, 3, imgsz, imgsz])],
        [_tensor("output", TensorProto.FLOAT, ["Concatoutput_dim_0", 7])],
        opset=12,
    )
    path = _save(graph, info, Path(folder) / "yolov7-tiny-end2end.onnx")
    return Planted(path, (imgsz, imgsz), ULTRALYTICS_PRE, _expected(objs, COCO80_CLASSES), "coco80")


def _yolov7_ort_nms(graph: _Graph, x: str, *, max_wh: float) -> None:
    """``ONNX_ORT.forward`` of YOLOv7's ``models/experimental.py`` as ONNX ops."""
    convert = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [-0.5, 0, 0.5, 0], [0, -0.5, 0, 0.5]], dtype=np.float32)
    cut = lambda a, b: graph.op(
        "Slice", x, graph.const([a], np.int64), graph.const([b], np.int64), graph.const([2], np.int64)
    )
    boxes = graph.op("MatMul", cut(0, 4), graph.const(convert))
    scores = graph.op("Mul", cut(5, 85), cut(4, 5))
    max_score = graph.op("ReduceMax", scores, axes=[2], keepdims=1)
    category = graph.op("ArgMax", scores, axis=2, keepdims=1)
    offset = graph.op("Mul", graph.op("Cast", category, to=TensorProto.FLOAT), graph.const(max_wh))
    selected = graph.op(
        "NonMaxSuppression",
        graph.op("Add", boxes, offset),
        graph.op("Transpose", max_score, perm=[0, 2, 1]),
        graph.const([100], np.int64),
        graph.const([0.45]),
        graph.const([0.25]),
    )
    at = graph.op("Gather", selected, graph.const([0, 2], np.int64), axis=1)
    batch = graph.op("Cast", graph.op("Gather", selected, graph.const([0], np.int64), axis=1), to=TensorProto.FLOAT)
    picked = [graph.op("GatherND", t, at) for t in (boxes, graph.op("Cast", category, to=TensorProto.FLOAT), max_score)]
    graph.op("Concat", batch, *picked, axis=1, out="output")


# ---------------------------------------------------------------- the zoo network in the official layout


def export_official_yolox(folder: Path, *, decoded: bool = False) -> Path:
    """edgevision's ``yolox-nano`` (seeded random weights) exported in the official YOLOX layout.

    The network and its weights are those of ``edgevision.api.load("yolox-nano",
    random_weights=True)``: the zoo's own ``build_module`` (``torch.manual_seed(RANDOM_SEED)``
    then ``spec.build()``), so this file and the zoo's two-output ``model.onnx`` hold the
    same network. Only the head's output differs, as in the official ``YOLOXHead.forward``
    at inference: per level ``cat(reg, obj.sigmoid(), cls.sigmoid())``, levels flattened
    and concatenated -> ``output`` [1, 3549, 85], decoded to cx, cy, w, h with
    ``decoded=True`` (``--decode_in_inference``). Opset 11, input ``images``, as the
    official ``tools/export_onnx.py``.

    What must match for the two files to decode to the same detections: pre-processing
    (top-left letterbox, pad 114, BGR, 0-255, no normalisation), boxes (zoo xyxy =
    cx -/+ w/2 of the official decode) and scores (zoo score = objectness x class
    probability of the official columns), up to float rounding.
    """
    import torch

    from edgevision.zoo import get_spec
    from edgevision.zoo.pytorch import build_module

    net = build_module(get_spec("yolox-nano"), random_weights=True)
    module = _official_layout(net, decoded=decoded).eval()
    path = Path(folder) / f"yolox_nano{'_decoded' if decoded else ''}_official.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode():
        torch.onnx.export(
            module,
            (torch.zeros(1, 3, 416, 416),),
            str(path),
            input_names=["images"],
            output_names=["output"],
            opset_version=11,
            dynamo=False,
        )
    return path


def _official_layout(net, *, decoded: bool):
    """``net`` wrapped so that its forward returns the official single ``[1, N, 85]`` output."""
    import torch
    from torch import nn

    from edgevision.models.nets.yolox import grid_xy

    class OfficialYoloxLayout(nn.Module):
        """The official ``YOLOXHead`` inference output over edgevision's YOLOX modules."""

        def __init__(self, net, *, decoded: bool) -> None:
            super().__init__()
            self.net, self.decoded = net, decoded

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            head = self.net.head
            levels = []
            for k, x in enumerate(self.net.backbone(images)):
                x = head.stems[k](x)
                reg_feat = head.reg_convs[k](x)
                out = torch.cat(
                    (
                        head.reg_preds[k](reg_feat),
                        head.obj_preds[k](reg_feat).sigmoid(),
                        head.cls_preds[k](head.cls_convs[k](x)).sigmoid(),
                    ),
                    1,
                )
                levels.append((out.flatten(2), x.shape[-2], x.shape[-1], head.strides[k]))
            outputs = torch.cat([out for out, *_ in levels], dim=2).permute(0, 2, 1)
            return self._decode(outputs, levels) if self.decoded else outputs

        @staticmethod
        def _decode(outputs: torch.Tensor, levels) -> torch.Tensor:
            grids = torch.cat([grid_xy(h, w, outputs.dtype) for _, h, w, _ in levels], dim=1)
            strides = torch.cat([torch.full((1, h * w, 1), float(s)) for _, h, w, s in levels], dim=1)
            xy = (outputs[..., :2] + grids) * strides
            wh = torch.exp(outputs[..., 2:4]) * strides
            return torch.cat((xy, wh, outputs[..., 4:]), dim=-1)

    return OfficialYoloxLayout(net, decoded=decoded)
