"""The upstream-format stand-ins: exact names, shapes and metadata, and planted boxes that decode by hand."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import upstream_models as um
from edgevision.models.coco import COCO80_CLASSES

SCORE_THRESHOLD = 0.25
IOU_THRESHOLD = 0.5


# ---------------------------------------------------------------- running and generic post-processing


def run(path: Path, size: tuple[int, int], fill: float = 0.0) -> dict[str, np.ndarray]:
    """Every output of ``path`` for a constant image; dynamic input sides take ``size``."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    spec = session.get_inputs()[0]
    dims = [d if isinstance(d, int) else {"height": size[1], "width": size[0]}[d] for d in spec.shape]
    dtype = np.uint8 if spec.type == "tensor(uint8)" else np.float32
    outputs = session.run(None, {spec.name: np.full(dims, fill, dtype=dtype)})
    return {o.name: value for o, value in zip(session.get_outputs(), outputs)}


def xyxy(cxcywh: np.ndarray) -> np.ndarray:
    centre, half = cxcywh[:, :2], cxcywh[:, 2:4] / 2
    return np.concatenate([centre - half, centre + half], axis=1)


def iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(box[:2], others[:, :2]), np.minimum(box[2:], others[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / (area(box) + area(others) - inter)


def best_class_nms(boxes: np.ndarray, scores: np.ndarray, *, nms: bool = True) -> list[tuple]:
    """``(class, score, box)`` best first: each row's best class over the threshold, then class-aware NMS."""
    classes, best = scores.argmax(axis=1), scores.max(axis=1)
    keep = [i for i in np.argsort(-best) if best[i] >= SCORE_THRESHOLD]
    chosen: list[int] = []
    for i in keep:
        same = [j for j in chosen if classes[j] == classes[i]]
        if not nms or not same or iou(boxes[i], boxes[same]).max() < IOU_THRESHOLD:
            chosen.append(i)
    return [(int(classes[i]), float(best[i]), boxes[i]) for i in chosen]


def rows_to_found(classes, scores, boxes) -> list[tuple]:
    return [(int(round(c)), float(s), np.asarray(b)) for c, s, b in zip(classes, scores, boxes)]


def assert_found(found: list[tuple], expected: list[um.PlantedObject]) -> None:
    assert [c for c, _, _ in found] == [o.class_id for o in expected]
    np.testing.assert_allclose([s for _, s, _ in found], [o.score for o in expected], atol=1e-5)
    np.testing.assert_allclose(np.stack([b for _, _, b in found]), [o.box for o in expected], atol=1e-3)


# ---------------------------------------------------------------- hand decoders, one per format


def decode_yolov8(out, planted, *, nms: bool = True) -> list[tuple]:
    rows = out["output0"][0].T
    return best_class_nms(xyxy(rows[:, :4]), rows[:, 4:], nms=nms)


def decode_yolov5(out, planted, *, nms: bool = True) -> list[tuple]:
    rows = out["output0"][0]
    return best_class_nms(xyxy(rows[:, :4]), rows[:, 4:5] * rows[:, 5:], nms=nms)


def yolox_grid(size: int, strides=(8, 16, 32), *, offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Cell (x, y) + ``offset`` and stride of every row, strides in order, row-major."""
    cells, steps = [], []
    for s in strides:
        side = -(-size // s)
        ys, xs = np.mgrid[:side, :side]
        cells.append(np.stack([xs.ravel(), ys.ravel()], axis=1) + offset)
        steps.append(np.full((side * side, 1), s))
    return np.concatenate(cells).astype(np.float64), np.concatenate(steps).astype(np.float64)


def decode_yolox_raw(out, planted, *, grid_offset: float = 0.0, nms: bool = True) -> list[tuple]:
    rows = out["output"][0].astype(np.float64)
    grid, stride = yolox_grid(planted.input_size[0], offset=grid_offset)
    cxcywh = np.concatenate([(rows[:, :2] + grid) * stride, np.exp(rows[:, 2:4]) * stride], axis=1)
    return best_class_nms(xyxy(cxcywh), rows[:, 4:5] * rows[:, 5:], nms=nms)


def decode_yolox_decoded(out, planted, *, nms: bool = True) -> list[tuple]:
    rows = out["output"][0]
    return best_class_nms(xyxy(rows[:, :4]), rows[:, 4:5] * rows[:, 5:], nms=nms)


def decode_two_output(out, planted, *, nms: bool = True) -> list[tuple]:
    return best_class_nms(out["boxes"][0], out["scores"][0], nms=nms)


def decode_nanodet(out, planted, *, grid_offset: float = 0.0, nms: bool = True) -> list[tuple]:
    rows = out["output"][0].astype(np.float64)
    centres, stride = yolox_grid(planted.input_size[0], (8, 16, 32, 64), offset=grid_offset)
    centres = centres * stride
    logits = rows[:, 80:].reshape(-1, 4, 8)
    p = np.exp(logits - logits.max(axis=2, keepdims=True))
    distances = (p / p.sum(axis=2, keepdims=True)) @ np.arange(8) * stride  # l, t, r, b
    boxes = np.concatenate([centres - distances[:, :2], centres + distances[:, 2:]], axis=1)
    return best_class_nms(boxes, rows[:, :80], nms=nms)


def decode_tf_ssd(
    out, planted, *, names=("detection_boxes", "detection_classes", "detection_scores", "num_detections")
):
    boxes, classes, scores, count = (out[n] for n in names)
    n = int(count[0])
    assert np.all(scores[0, n:] == 0) and np.all(boxes[0, n:] == 0) and np.all(np.diff(scores[0, :n]) <= 0)
    w, h = planted.input_size
    pixels = boxes[0, :n][:, [1, 0, 3, 2]] * np.array([w, h, w, h])
    return rows_to_found(classes[0, :n], scores[0, :n], pixels)


def decode_tflite_ssd(out, planted) -> list[tuple]:
    base = "TFLite_Detection_PostProcess"
    return decode_tf_ssd(out, planted, names=(base, f"{base}:1", f"{base}:2", f"{base}:3"))


def decode_yolov7_end2end(out, planted) -> list[tuple]:
    rows = out["output"]
    assert np.all(rows[:, 0] == 0)
    return rows_to_found(rows[:, 5], rows[:, 6], rows[:, 1:5])


def decode_ultralytics_nms(out, planted) -> list[tuple]:
    rows = out["output0"][0]
    n = int(np.count_nonzero(rows[:, 4]))
    assert np.all(rows[n:] == 0)
    return rows_to_found(rows[:n, 5], rows[:n, 4], rows[:n, :4])


# ---------------------------------------------------------------- the table


@dataclass(frozen=True)
class Case:
    build: object
    options: dict
    inputs: dict  # name -> (onnx elem type, shape)
    outputs: dict
    decode: object


F, U8 = onnx.TensorProto.FLOAT, onnx.TensorProto.UINT8
TFLITE = "TFLite_Detection_PostProcess"
CASES = {
    "yolov8": Case(
        um.build_yolov8, {}, {"images": (F, [1, 3, 640, 640])}, {"output0": (F, [1, 84, 8400])}, decode_yolov8
    ),
    "yolov8-320-nc3": Case(
        um.build_yolov8,
        {"imgsz": 320, "nc": 3},
        {"images": (F, [1, 3, 320, 320])},
        {"output0": (F, [1, 7, 2100])},
        decode_yolov8,
    ),
    "yolov5": Case(
        um.build_yolov5, {}, {"images": (F, [1, 3, 640, 640])}, {"output0": (F, [1, 25200, 85])}, decode_yolov5
    ),
    "yolov5-320": Case(
        um.build_yolov5,
        {"imgsz": 320},
        {"images": (F, [1, 3, 320, 320])},
        {"output0": (F, [1, 6300, 85])},
        decode_yolov5,
    ),
    "yolox": Case(
        um.build_yolox, {}, {"images": (F, [1, 3, 416, 416])}, {"output": (F, [1, 3549, 85])}, decode_yolox_raw
    ),
    "yolox-decoded": Case(
        um.build_yolox,
        {"decoded": True},
        {"images": (F, [1, 3, 416, 416])},
        {"output": (F, [1, 3549, 85])},
        decode_yolox_decoded,
    ),
    "nanodet-plus": Case(
        um.build_nanodet_plus, {}, {"data": (F, [1, 3, 416, 416])}, {"output": (F, [1, 3598, 112])}, decode_nanodet
    ),
    "tf-ssd": Case(
        um.build_tf_ssd,
        {},
        {"input_tensor": (U8, [1, "height", "width", 3])},
        {
            "detection_boxes": (F, [1, 100, 4]),
            "detection_classes": (F, [1, 100]),
            "detection_scores": (F, [1, 100]),
            "num_detections": (F, [1]),
        },
        decode_tf_ssd,
    ),
    "tflite-ssd": Case(
        um.build_tflite_ssd,
        {},
        {"normalized_input_image_tensor": (F, [1, 300, 300, 3])},
        {TFLITE: (F, [1, 10, 4]), f"{TFLITE}:1": (F, [1, 10]), f"{TFLITE}:2": (F, [1, 10]), f"{TFLITE}:3": (F, [1])},
        decode_tflite_ssd,
    ),
    "ultralytics-nms": Case(
        um.build_ultralytics_nms,
        {},
        {"images": (F, [1, 3, 640, 640])},
        {"output0": (F, [1, 300, 6])},
        decode_ultralytics_nms,
    ),
    "yolov7-end2end": Case(
        um.build_yolov7_end2end,
        {},
        {"images": (F, [1, 3, 640, 640])},
        {"output": (F, ["Concatoutput_dim_0", 7])},
        decode_yolov7_end2end,
    ),
    "two-output": Case(
        um.build_two_output,
        {},
        {"images": (F, [1, 3, 416, 416])},
        {"boxes": (F, [1, 3549, 4]), "scores": (F, [1, 3549, 80])},
        decode_two_output,
    ),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, um.Planted]:
    return {name: case.build(tmp_path_factory.mktemp(name), **case.options) for name, case in CASES.items()}


def _signature(values) -> dict:
    return {
        v.name: (v.type.tensor_type.elem_type, [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim])
        for v in values
    }


@pytest.mark.parametrize("name", CASES)
def test_names_shapes_and_checker(built, name):
    model = onnx.load(str(built[name].path))
    onnx.checker.check_model(model, full_check=True)
    assert _signature(model.graph.input) == CASES[name].inputs
    assert _signature(model.graph.output) == CASES[name].outputs


@pytest.mark.parametrize("name", CASES)
def test_planted_objects_decode_by_hand(built, name):
    planted = built[name]
    out = run(planted.path, planted.input_size)
    assert set(out) == set(CASES[name].outputs)
    assert len(planted.expected) >= 3
    assert_found(CASES[name].decode(out, planted), planted.expected)


THROUGH_NMS = ("tf-ssd", "tflite-ssd", "yolov7-end2end")


@pytest.mark.parametrize("name", [n for n in CASES if n not in THROUGH_NMS])
def test_outputs_depend_on_the_image_through_a_conv(built, name):
    path = built[name].path
    assert "Conv" in {node.op_type for node in onnx.load(str(path)).graph.node}
    for value in run(path, built[name].input_size, fill=np.nan).values():
        assert np.isnan(value).any()


@pytest.mark.parametrize(("name", "count"), [("tflite-ssd", f"{TFLITE}:3"), ("yolov7-end2end", "output")])
def test_a_nan_image_leaves_nothing_for_nms_to_keep(built, name, count):
    assert {"Conv", "NonMaxSuppression"} <= {node.op_type for node in onnx.load(str(built[name].path)).graph.node}
    assert run(built[name].path, built[name].input_size)[count].size > 0
    out = run(built[name].path, built[name].input_size, fill=np.nan)[count]
    assert out.size == 0 if name == "yolov7-end2end" else out.tolist() == [0.0]


def test_tf_ssd_resizes_inside_and_post_processes_like_tf2onnx(built):
    planted = built["tf-ssd"]
    ops = {node.op_type for node in onnx.load(str(planted.path)).graph.node}
    assert {"Resize", "Conv", "Loop", "NonMaxSuppression", "TopK", "GatherND", "Pad"} <= ops
    small, large = run(planted.path, (320, 240)), run(planted.path, (1280, 720))
    for key in small:  # boxes are fractions of the input image, whatever its size
        np.testing.assert_array_equal(small[key], large[key])
    assert small["num_detections"].tolist() == [len(planted.expected)]


def test_tf_ssd_names_with_suffix_and_tf1_input(tmp_path):
    planted = um.build_tf_ssd(tmp_path, input_name="image_tensor", name_suffix=":0")
    model = onnx.load(str(planted.path))
    assert [v.name for v in model.graph.input] == ["image_tensor:0"]
    assert {v.name for v in model.graph.output} == {
        "detection_boxes:0",
        "detection_classes:0",
        "detection_scores:0",
        "num_detections:0",
    }
    names = tuple(f"{n}:0" for n in ("detection_boxes", "detection_classes", "detection_scores", "num_detections"))
    assert_found(decode_tf_ssd(run(planted.path, planted.input_size), planted, names=names), planted.expected)


def test_ssd_class_ids_are_coco_category_ids(built):
    assert len(um.COCO91_IDS) == 80 and list(um.COCO91_IDS) == sorted(set(um.COCO91_IDS))
    ids = dict(zip(COCO80_CLASSES, um.COCO91_IDS))
    assert (ids["person"], ids["car"], ids["dog"], ids["toothbrush"]) == (1, 3, 18, 90)
    for obj in built["tf-ssd"].expected:
        assert obj.class_id == ids[obj.class_name]
    for obj in built["tflite-ssd"].expected:
        assert obj.class_id == ids[obj.class_name] - 1
    assert (built["tf-ssd"].label_space, built["tflite-ssd"].label_space) == ("coco91", "coco91-1")


def test_ultralytics_metadata(built):
    props = {p.key: p.value for p in onnx.load(str(built["yolov8"].path)).metadata_props}
    assert {k: props[k] for k in ("author", "task", "stride", "batch", "imgsz")} == {
        "author": "Ultralytics",
        "task": "detect",
        "stride": "32",
        "batch": "1",
        "imgsz": "[640, 640]",
    }
    assert props["names"].startswith("{0: 'person', 1: 'bicycle', 2: 'car'")
    assert ast.literal_eval(props["names"]) == dict(enumerate(COCO80_CLASSES))
    assert {"description", "version", "date", "license", "docs", "args"} <= set(props)
    small = {p.key: p.value for p in onnx.load(str(built["yolov8-320-nc3"].path)).metadata_props}
    assert (small["imgsz"], ast.literal_eval(small["names"])) == ("[320, 320]", {0: "person", 1: "bicycle", 2: "car"})
    nms = {p.key: p.value for p in onnx.load(str(built["ultralytics-nms"].path)).metadata_props}
    assert ast.literal_eval(nms["args"])["nms"] is True


def test_yolov8_without_metadata(tmp_path):
    assert not onnx.load(str(um.build_yolov8(tmp_path, imgsz=320, with_metadata=False).path)).metadata_props


def test_yolov5_metadata(built):
    props = {p.key: p.value for p in onnx.load(str(built["yolov5"].path)).metadata_props}
    assert props.keys() == {"stride", "names"}
    assert props["stride"] == "32" and ast.literal_eval(props["names"]) == dict(enumerate(COCO80_CLASSES))


@pytest.mark.parametrize("name", ["yolox", "yolox-decoded", "nanodet-plus", "two-output"])
def test_official_exports_carry_no_metadata(built, name):
    assert not onnx.load(str(built[name].path)).metadata_props


@pytest.mark.parametrize(
    ("name", "pre"),
    [
        ("yolov8", ("letterbox-center", "RGB", (0.0,) * 3, (255.0,) * 3, 114)),
        ("yolox", ("letterbox-corner", "BGR", (0.0,) * 3, (1.0,) * 3, 114)),
        ("nanodet-plus", ("stretch", "BGR", (103.53, 116.28, 123.675), (57.375, 57.12, 58.395), None)),
        ("tf-ssd", ("native", "RGB", (0.0,) * 3, (1.0,) * 3, None)),
        ("tflite-ssd", ("stretch", "RGB", (127.5,) * 3, (127.5,) * 3, None)),
    ],
)
def test_preprocessing_is_upstream_s(built, name, pre):
    p = built[name].preprocess
    assert (p.resize, p.color, p.mean, p.std, p.pad_value) == pre


# ---------------------------------------------------------------- the checks above can fail


def test_wrong_decodes_miss_the_planted_boxes(built):
    """The grid matters: YOLOX without the cell offset, or NanoDet with a half-cell offset, misplace boxes."""
    yolox, nanodet = built["yolox"], built["nanodet-plus"]
    with pytest.raises(AssertionError):
        assert_found(decode_yolox_decoded(run(yolox.path, yolox.input_size), yolox), yolox.expected)
    with pytest.raises(AssertionError):
        assert_found(decode_yolox_raw(run(yolox.path, yolox.input_size), yolox, grid_offset=0.5), yolox.expected)
    with pytest.raises(AssertionError):
        assert_found(decode_nanodet(run(nanodet.path, nanodet.input_size), nanodet, grid_offset=0.5), nanodet.expected)


@pytest.mark.parametrize("name", ["yolov8", "yolov5", "yolox", "nanodet-plus", "two-output"])
def test_raw_outputs_hold_a_duplicate_for_nms_to_remove(built, name):
    planted = built[name]
    out = run(planted.path, planted.input_size)
    assert len(CASES[name].decode(out, planted, nms=False)) == 2 * len(planted.expected)


def test_custom_objects(tmp_path):
    objects = [(15, 0.77, (10.0, 20.0, 110.5, 300.25)), (56, 0.55, (200.0, 150.0, 260.0, 190.0))]
    planted = um.build_yolox(tmp_path, objects=objects)
    assert [(o.class_name, o.score) for o in planted.expected] == [("cat", 0.77), ("chair", 0.55)]
    assert_found(decode_yolox_raw(run(planted.path, planted.input_size), planted), planted.expected)


def test_nanodet_refuses_a_box_no_prior_can_code(tmp_path):
    with pytest.raises(ValueError, match="strides"):
        um.build_nanodet_plus(tmp_path, objects=[(0, 0.9, (3.0, 5.0, 50.0, 60.0))])


# ---------------------------------------------------------------- the zoo network in the official layout


@pytest.fixture(scope="module")
def official_yolox(tmp_path_factory) -> dict[bool, Path]:
    pytest.importorskip("torch")
    folder = tmp_path_factory.mktemp("official")
    return {decoded: um.export_official_yolox(folder, decoded=decoded) for decoded in (False, True)}


@pytest.mark.slow
def test_official_yolox_layout_holds_the_zoo_network(official_yolox):
    """Decoded by hand, the official-layout file gives the zoo network's own boxes and scores."""
    import torch

    from edgevision.zoo import get_spec
    from edgevision.zoo.pytorch import build_module

    image = np.random.default_rng(3).uniform(0, 255, (1, 3, 416, 416)).astype(np.float32)
    with torch.inference_mode():
        boxes, scores = (
            t[0].numpy() for t in build_module(get_spec("yolox-nano"), random_weights=True)(torch.from_numpy(image))
        )
    sessions = {d: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for d, p in official_yolox.items()}
    for session in sessions.values():
        assert [(i.name, i.shape) for i in session.get_inputs()] == [("images", [1, 3, 416, 416])]
        assert [(o.name, o.shape) for o in session.get_outputs()] == [("output", [1, 3549, 85])]
    raw, decoded = (sessions[d].run(None, {"images": image})[0][0] for d in (False, True))
    grid, stride = yolox_grid(416)
    by_hand = np.concatenate([(raw[:, :2] + grid) * stride, np.exp(raw[:, 2:4]) * stride], axis=1)
    np.testing.assert_allclose(decoded[:, :4], by_hand, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(decoded[:, 4:], raw[:, 4:])
    np.testing.assert_allclose(xyxy(decoded[:, :4]), boxes, rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(decoded[:, 4:5] * decoded[:, 5:], scores, atol=1e-5)
