"""Tiny ONNX files with the structure of real third-party exports, built with ``onnx.helper``.

* ``opset12_detector``: a conv detector as Keras/tf2onnx and older torch exports write it,
  at opset 12, with outputs ``boxes`` [1, N, 4] and ``scores`` [1, N, C].
* ``tfod_detector``: a conv detector with TF Object Detection API post-processing inside, as
  tf2onnx exports it: uint8 NHWC ``input_tensor``, boxes and scores, then a ``Loop`` over the
  batch whose body runs ``NonMaxSuppression``, ``Gather``, ``TopK`` and pads to K detections;
  outputs ``detection_boxes`` [1, K, 4], ``detection_scores`` [1, K], ``detection_classes``
  [1, K] and ``num_detections`` [1]. Node names follow the TF-OD-API scopes
  (``Postprocessor/BatchMultiClassNonMaxSuppression/map/while/...``).

Weights are seeded random values: the tests compare a variant with its own float model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIDE = 64
CLASSES = 3
MAX_DETECTIONS = 10
BACKBONE = ((3, 8), (8, 16), (16, 16))  # (in, out) channels of the stride-2 convs
NMS_SCOPE = "Postprocessor/BatchMultiClassNonMaxSuppression/map/while"


class _Graph:
    """Nodes and initializers collected while a graph is written."""

    def __init__(self, seed: int = 0) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.rng = np.random.default_rng(seed)

    def node(self, op: str, inputs: list[str], name: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def const(self, name: str, value) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def conv(self, x: str, cin: int, cout: int, name: str, *, stride: int = 2, relu: bool = True) -> str:
        kernel = 3 if stride == 2 else 1
        w = self.rng.normal(0, (2.0 / (cin * kernel * kernel)) ** 0.5, (cout, cin, kernel, kernel))
        b = self.rng.normal(0, 0.1, cout)
        pads = [kernel // 2] * 4
        args = [
            x,
            self.const(f"{name}/weights", w.astype(np.float32)),
            self.const(f"{name}/bias", b.astype(np.float32)),
        ]
        y = self.node("Conv", args, f"{name}/Conv2D", strides=[stride, stride], pads=pads)
        return self.node("Relu", [y], f"{name}/Relu") if relu else y


def _backbone(g: _Graph, x: str, *, pixel_boxes: bool = False) -> tuple[str, str, int]:
    """Stride-8 features -> boxes [1, N, 4] and scores [1, N, C].

    Boxes are sigmoids (corners in [0, 1]), or with ``pixel_boxes`` sizes decoded from log space
    to pixel areas (``exp(4 t) * 1e5``), which exceed float16's range (65504).
    """
    for i, (cin, cout) in enumerate(BACKBONE):
        x = g.conv(x, cin, cout, f"FeatureExtractor/conv{i}")
    head = g.conv(x, BACKBONE[-1][1], 4 + CLASSES, "BoxPredictor/head", stride=1, relu=False)
    anchors = (SIDE // 8) ** 2
    flat = g.node("Transpose", [head], "BoxPredictor/transpose", perm=[0, 2, 3, 1])
    flat = g.node(
        "Reshape", [flat, g.const("BoxPredictor/shape", np.array([1, anchors, 4 + CLASSES]))], "BoxPredictor/reshape"
    )
    split = [g.const("BoxPredictor/split", np.array([4, CLASSES]))]
    g.nodes.append(
        helper.make_node("Split", [flat, *split], ["raw_boxes", "raw_logits"], name="BoxPredictor/split", axis=2)
    )
    if pixel_boxes:
        grown = g.node(
            "Exp",
            [g.node("Mul", ["raw_boxes", g.const("BoxPredictor/log_scale", np.float32(4))], "BoxPredictor/scaled")],
            "BoxPredictor/exp",
        )
        boxes = g.node("Mul", [grown, g.const("BoxPredictor/pixels", np.float32(1e5))], "boxes")
    else:  # SSD-style: small offsets of fixed anchor boxes, one per cell of the stride-8 grid
        offsets = g.node("Tanh", ["raw_boxes"], "BoxPredictor/offsets")
        offsets = g.node(
            "Mul", [offsets, g.const("BoxPredictor/offset_scale", np.float32(0.05))], "BoxPredictor/scaled"
        )
        boxes = g.node("Add", [offsets, g.const("BoxPredictor/anchors", _anchors())], "boxes")
    sharp = g.node("Mul", ["raw_logits", g.const("BoxPredictor/logit_scale", np.float32(12))], "BoxPredictor/logits")
    sharp = g.node("Sub", [sharp, g.const("BoxPredictor/logit_bias", np.float32(2))], "BoxPredictor/biased")
    scores = g.node("Sigmoid", [sharp], "scores")
    return boxes, scores, anchors


def _anchors() -> np.ndarray:
    """[1, N, 4] corner boxes (y1, x1, y2, x2 in [0, 1]) centred on the cells of the stride-8 grid, two cells wide."""
    cells = SIDE // 8
    centre = (np.arange(cells) + 0.5) / cells
    cy, cx = (a.ravel() for a in np.meshgrid(centre, centre, indexing="ij"))
    half = 1.0 / cells
    return np.stack([cy - half, cx - half, cy + half, cx + half], axis=1)[None].astype(np.float32)


def _save(g: _Graph, inputs, outputs, path: Path, opset: int) -> Path:
    graph = helper.make_graph(g.nodes, path.stem, inputs, outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="tf2onnx")
    model.ir_version = 7
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def _split_as_opset12(g: _Graph) -> None:
    """Opset 12's Split takes the sizes as an attribute, not an input."""
    node = next(n for n in g.nodes if n.op_type == "Split")
    del node.input[1:]
    node.attribute.append(helper.make_attribute("split", [4, CLASSES]))
    g.inits = [t for t in g.inits if t.name != "BoxPredictor/split"]


def opset12_detector(folder: Path) -> Path:
    """A conv detector at opset 12: ``images`` [1, 3, 64, 64] -> ``boxes`` [1, N, 4], ``scores`` [1, N, C]."""
    g = _Graph(seed=1)
    _, _, anchors = _backbone(g, "images")
    _split_as_opset12(g)
    inputs = [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, SIDE, SIDE])]
    outputs = [
        helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, anchors, 4]),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, anchors, CLASSES]),
    ]
    return _save(g, inputs, outputs, Path(folder) / "detector-opset12.onnx", 12)


def pixel_box_detector(folder: Path) -> Path:
    """A conv detector (opset 13) whose box sizes are decoded to pixels in the graph: fine in
    float32, out of float16's range, so fp16 breaks it."""
    g = _Graph(seed=3)
    _, _, anchors = _backbone(g, "images", pixel_boxes=True)
    inputs = [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, SIDE, SIDE])]
    outputs = [
        helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, anchors, 4]),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, anchors, CLASSES]),
    ]
    return _save(g, inputs, outputs, Path(folder) / "pixel-boxes.onnx", 13)


def _nms_body(boxes: str, scores: str) -> onnx.GraphProto:
    """The Loop body of one image: NMS, the K best by score, padded to K (TF-OD-API's map/while)."""
    g = _Graph()
    s = NMS_SCOPE
    i = "iteration"
    b = g.node("Gather", [boxes, i], f"{s}/boxes", axis=0)  # [N, 4]
    c = g.node("Gather", [scores, i], f"{s}/scores", axis=0)  # [N, C]
    b1 = g.node("Unsqueeze", [b, g.const(f"{s}/axis0", np.array([0]))], f"{s}/boxes_batch")
    c1 = g.node("Transpose", [c], f"{s}/scores_by_class", perm=[1, 0])
    c1 = g.node("Unsqueeze", [c1, f"{s}/axis0"], f"{s}/scores_batch")  # [1, C, N]
    limits = [
        g.const(f"{s}/max_per_class", np.array([MAX_DETECTIONS], np.int64)),
        g.const(f"{s}/iou", np.array([0.5], np.float32)),
        g.const(f"{s}/score_threshold", np.array([0.3], np.float32)),
    ]
    sel = g.node("NonMaxSuppression", [b1, c1, *limits], f"{s}/MultiClassNonMaxSuppression/NonMaxSuppressionV3")
    cls = g.node("Gather", [sel, g.const(f"{s}/one", np.array(1, np.int64))], f"{s}/selected_classes", axis=1)
    idx = g.node("Gather", [sel, g.const(f"{s}/two", np.array(2, np.int64))], f"{s}/selected_indices", axis=1)
    pair = g.node(
        "Slice",
        [sel, *(g.const(f"{s}/{k}", np.array(v)) for k, v in (("p0", [1]), ("p1", [3]), ("pa", [1])))],
        f"{s}/class_box",
    )
    picked = g.node(
        "GatherND",
        [
            c,
            g.node(
                "Concat",
                [
                    g.node("Unsqueeze", [idx, g.const(f"{s}/axis1", np.array([1]))], f"{s}/idx_col"),
                    g.node("Slice", [pair, f"{s}/axis0", f"{s}/axis1", f"{s}/axis1"], f"{s}/cls_col"),
                ],
                f"{s}/box_class",
                axis=1,
            ),
        ],
        f"{s}/selected_scores",
    )
    count = g.node("Shape", [picked], f"{s}/num_selected")
    k = g.node("Min", [count, g.const(f"{s}/K", np.array([MAX_DETECTIONS], np.int64))], f"{s}/k")
    g.nodes.append(
        helper.make_node("TopK", [picked, k], [f"{s}/top_scores", f"{s}/top"], name=f"{s}/SortByField/TopKV2", axis=0)
    )
    top_boxes = g.node(
        "Gather", [b, g.node("Gather", [idx, f"{s}/top"], f"{s}/top_box_idx", axis=0)], f"{s}/top_boxes", axis=0
    )
    top_classes = g.node(
        "Cast", [g.node("Gather", [cls, f"{s}/top"], f"{s}/top_cls", axis=0)], f"{s}/top_classes", to=TensorProto.FLOAT
    )
    missing = g.node("Sub", [f"{s}/K", k], f"{s}/missing")
    zero = g.const(f"{s}/zero1", np.array([0], np.int64))
    pad2 = g.node("Concat", [zero, zero, missing, zero], f"{s}/pads2", axis=0)
    pad1 = g.node("Concat", [zero, missing], f"{s}/pads1", axis=0)
    out_boxes = g.node("Pad", [top_boxes, pad2], f"{s}/PadOrClipBoxList/boxes")
    out_scores = g.node("Pad", [f"{s}/top_scores", pad1], f"{s}/PadOrClipBoxList/scores")
    out_classes = g.node("Pad", [top_classes, pad1], f"{s}/PadOrClipBoxList/classes")
    num = g.node("Cast", [g.node("Squeeze", [k, f"{s}/axis0"], f"{s}/k_scalar")], f"{s}/num", to=TensorProto.FLOAT)
    g.node("Identity", ["condition"], f"{s}/cond_out")
    inputs = [
        helper.make_tensor_value_info(i, TensorProto.INT64, []),
        helper.make_tensor_value_info("condition", TensorProto.BOOL, []),
    ]
    outputs = [helper.make_tensor_value_info(f"{s}/cond_out", TensorProto.BOOL, [])] + [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
        for name in (out_boxes, out_scores, out_classes, num)
    ]
    return helper.make_graph(g.nodes, "map_while_body", inputs, outputs, g.inits)


def tfod_detector(folder: Path) -> Path:
    """A conv detector with TF-OD-API post-processing (NMS inside a Loop), opset 13."""
    g = _Graph(seed=2)
    x = g.node("Cast", ["input_tensor"], "Preprocessor/Cast", to=TensorProto.FLOAT)
    x = g.node("Mul", [x, g.const("Preprocessor/scale", np.array(2 / 255, np.float32))], "Preprocessor/mul")
    x = g.node("Sub", [x, g.const("Preprocessor/one", np.array(1.0, np.float32))], "Preprocessor/sub")
    x = g.node("Transpose", [x], "Preprocessor/to_nchw", perm=[0, 3, 1, 2])
    boxes, scores, _ = _backbone(g, x)
    batch = g.node("Shape", [boxes], "Postprocessor/shape")
    trips = g.node(
        "Gather", [batch, g.const("Postprocessor/zero", np.array(0, np.int64))], "Postprocessor/batch", axis=0
    )
    names = ["detection_boxes", "detection_scores", "detection_classes", "num_detections"]
    loop = helper.make_node(
        "Loop",
        [trips, g.const("Postprocessor/true", np.array(True))],
        names,
        name=f"{NMS_SCOPE}/Loop",
        body=_nms_body(boxes, scores),
    )
    g.nodes.append(loop)
    inputs = [helper.make_tensor_value_info("input_tensor", TensorProto.UINT8, [1, SIDE, SIDE, 3])]
    shapes = ([1, MAX_DETECTIONS, 4], [1, MAX_DETECTIONS], [1, MAX_DETECTIONS], [1])
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in zip(names, shapes)]
    return _save(g, inputs, outputs, Path(folder) / "tfod-ssd.onnx", 13)


POSTPROCESSING_OPS = {"NonMaxSuppression", "TopK", "Loop", "GatherND"}


def op_types(path: Path) -> set[str]:
    """Op types of a model's top graph and every subgraph."""
    found: set[str] = set()

    def walk(graph) -> None:
        for node in graph.node:
            found.add(node.op_type)
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)

    walk(onnx.load(str(path)).graph)
    return found
