"""Decoders of the TF.js zoo models and the TF.js converter, on synthetic tensors and tiny graphs."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from edgevision.conversion.tfjs import (
    fold_maxpool_pads,
    read_weights,
    split_fused_ops,
)
from edgevision.errors import EdgevisionError
from edgevision.models.coco import COCO17_KEYPOINTS
from edgevision.models.movenet import MoveNetProcessor
from edgevision.models.nanodet import NanoDetProcessor, gfl_boxes
from edgevision.models.transforms import resize

# ----------------------------------------------------------------------------- NanoDet / GFL

CLASSES = ("a", "b", "c")
BINS = 8  # reg_max 7


def _peaked(sides: tuple[int, int, int, int]) -> np.ndarray:
    """Distribution logits whose softmax puts (almost) all mass on bin ``sides[i]``."""
    logits = np.full((4, BINS), -30.0, np.float32)
    logits[np.arange(4), sides] = 30.0
    return logits.reshape(-1)


def _gfl_outputs(hits: list[tuple[int, int, int, float, tuple]]) -> dict[str, np.ndarray]:
    """64x64 input, strides 8/16/32; ``hits`` are (stride, cell, class, score, sides)."""
    outputs = {}
    for i, stride in enumerate((8, 16, 32)):
        cells = (64 // stride) ** 2
        scores = np.full((1, cells, len(CLASSES)), 0.01, np.float32)
        dists = np.zeros((1, cells, 4 * BINS), np.float32)
        for s, cell, cls, score, sides in hits:
            if s == stride:
                scores[0, cell, cls] = score
                dists[0, cell] = _peaked(sides)
        outputs[f"dist_{i}"], outputs[f"score_{i}"] = dists, scores  # names carry no meaning
    return outputs


def _processor() -> NanoDetProcessor:
    return NanoDetProcessor(input_size=(64, 64), class_names=CLASSES, score_threshold=0.35)


def test_gfl_boxes_from_peaked_distributions():
    # cell 6 of a 4-wide grid is row 1, col 2: centre (40, 24) at stride 16
    boxes = gfl_boxes(_peaked((1, 1, 2, 0))[None], np.array([6]), 4, 16)
    np.testing.assert_allclose(boxes, [[24, 8, 72, 24]], atol=1e-3)


def test_nanodet_decode_maps_boxes_to_source_pixels():
    image = np.zeros((64, 128, 3), np.uint8)  # stretched to 64x64: x halves
    _, transform = resize(image, (64, 64))
    outputs = _gfl_outputs([(16, 6, 2, 0.9, (1, 1, 1, 1)), (8, 0, 0, 0.6, (1, 1, 1, 1))])
    dets = _processor().decode(outputs, transform)
    assert [dets.label(i) for i in range(len(dets))] == ["c", "a"]
    np.testing.assert_allclose(dets.scores, [0.9, 0.6], atol=1e-6)
    np.testing.assert_allclose(dets.xyxy[0], [48, 8, 112, 40], atol=1e-2)
    np.testing.assert_allclose(dets.xyxy[1], [0, 0, 24, 12], atol=1e-2)  # (-4,-4,12,12) clipped


def test_nanodet_nms_is_class_aware():
    same_box = (16, 6, 1, 0.8, (1, 1, 1, 1))
    outputs = _gfl_outputs([(16, 6, 2, 0.9, (1, 1, 1, 1)), same_box])
    _, transform = resize(np.zeros((64, 64, 3), np.uint8), (64, 64))
    dets = _processor().decode(outputs, transform)
    assert sorted(dets.class_ids.tolist()) == [1, 2]  # same box, two classes: both kept
    outputs["score_1"][0, 6, 1] = 0.0
    outputs["score_1"][0, 7, 2] = 0.8  # neighbouring cell, same class, overlapping box
    outputs["dist_1"][0, 7] = _peaked((2, 1, 1, 1))
    dets = _processor().decode(outputs, transform)
    assert dets.class_ids.tolist() == [2] and dets.scores[0] == pytest.approx(0.9)


def test_nanodet_all_low_scores_give_no_detections():
    _, transform = resize(np.zeros((64, 64, 3), np.uint8), (64, 64))
    dets = _processor().decode(_gfl_outputs([]), transform)
    assert len(dets) == 0 and dets.xyxy.shape == (0, 4) and dets.class_names == CLASSES


def test_nanodet_rejects_outputs_of_another_model():
    _, transform = resize(np.zeros((64, 64, 3), np.uint8), (64, 64))
    with pytest.raises(EdgevisionError, match="stride 8"):
        _processor().decode({"x": np.zeros((1, 10, 3), np.float32)}, transform)


def test_nanodet_preprocess_is_nchw_normalised():
    x, transform = NanoDetProcessor().preprocess(np.full((100, 200, 3), 128, np.uint8))
    assert x.shape == (1, 3, 416, 416) and x.dtype == np.float32
    assert abs(float(x.mean())) < 0.5 and transform.source_size == (200, 100)


# ----------------------------------------------------------------------------- MoveNet


def _single_pose_raw(source_xy: np.ndarray, score: float, size: int, transform) -> np.ndarray:
    model_xy = np.stack(
        [source_xy[:, 0] * transform.scale_x + transform.pad_x, source_xy[:, 1] * transform.scale_y + transform.pad_y],
        1,
    )
    raw = np.zeros((1, 1, 17, 3), np.float32)
    raw[0, 0, :, 0], raw[0, 0, :, 1], raw[0, 0, :, 2] = model_xy[:, 1] / size, model_xy[:, 0] / size, score
    return raw


def test_movenet_single_pose_through_letterbox():
    processor = MoveNetProcessor(input_size=(192, 192))
    x, transform = processor.preprocess(np.zeros((100, 200, 3), np.uint8))
    assert x.shape == (1, 192, 192, 3) and x.dtype == np.int32
    assert transform.pad_y == 48 and transform.pad_x == 0
    source = np.stack([np.linspace(10, 190, 17), np.linspace(5, 95, 17)], 1).astype(np.float32)
    poses = processor.decode({"out": _single_pose_raw(source, 0.8, 192, transform)}, transform)
    assert len(poses) == 1 and poses.keypoint_names == COCO17_KEYPOINTS
    np.testing.assert_allclose(poses.keypoints[0, :, :2], source, atol=1e-3)
    assert poses.scores[0] == pytest.approx(0.8)


def test_movenet_single_pose_below_threshold_is_empty():
    processor = MoveNetProcessor(input_size=(192, 192), score_threshold=0.3)
    _, transform = processor.preprocess(np.zeros((100, 200, 3), np.uint8))
    source = np.full((17, 2), 50.0, np.float32)
    poses = processor.decode({"out": _single_pose_raw(source, 0.1, 192, transform)}, transform)
    assert len(poses) == 0 and poses.keypoints.shape == (0, 17, 3)


def test_movenet_multipose_input_is_multiple_of_32():
    processor = MoveNetProcessor(input_size=(256, 256), multiple_of=32)
    x, transform = processor.preprocess(np.zeros((100, 300, 3), np.uint8))
    assert x.shape == (1, 96, 256, 3)  # 300x100 -> 256x85 -> height rounded up to 96
    assert transform.pad_y == 5 and transform.scale_y == pytest.approx(0.85)


def test_movenet_multipose_decodes_people_above_threshold_best_first():
    processor = MoveNetProcessor(input_size=(256, 256), multiple_of=32, score_threshold=0.2)
    _, transform = processor.preprocess(np.zeros((100, 300, 3), np.uint8))
    raw = np.zeros((1, 6, 56), np.float32)
    for row, (sx, sy, score) in enumerate([(150.0, 50.0, 0.5), (30.0, 20.0, 0.9), (200.0, 80.0, 0.1)]):
        mx, my = sx * transform.scale_x + transform.pad_x, sy * transform.scale_y + transform.pad_y
        raw[0, row, 0:51:3], raw[0, row, 1:51:3], raw[0, row, 2:51:3] = my / 96, mx / 256, 0.7
        raw[0, row, 51:] = [(my - 8.5) / 96, (mx - 12.8) / 256, (my + 8.5) / 96, (mx + 12.8) / 256, score]
    poses = processor.decode({"out": raw}, transform)
    np.testing.assert_allclose(poses.scores, [0.9, 0.5])
    np.testing.assert_allclose(poses.keypoints[0, :, :2], np.tile([30.0, 20.0], (17, 1)), atol=1e-3)
    np.testing.assert_allclose(poses.keypoints[1, 5, :], [150.0, 50.0, 0.7], atol=1e-3)
    np.testing.assert_allclose(poses.xyxy[1], [135, 40, 165, 60], atol=1e-3)


def test_movenet_multipose_nobody():
    processor = MoveNetProcessor(input_size=(256, 256), multiple_of=32)
    _, transform = processor.preprocess(np.zeros((256, 256, 3), np.uint8))
    poses = processor.decode({"out": np.zeros((1, 6, 56), np.float32)}, transform)
    assert len(poses) == 0 and poses.xyxy.shape == (0, 4)


def test_movenet_rejects_unknown_output():
    processor = MoveNetProcessor()
    _, transform = processor.preprocess(np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(EdgevisionError, match="not a MoveNet output"):
        processor.decode({"out": np.zeros((1, 5), np.float32)}, transform)


# ----------------------------------------------------------------------------- TF.js graph rewriting


def _s(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _fused(name: str, op: str, fused: list[str], inputs: list[str]) -> dict:
    attr = {"T": {"type": "DT_FLOAT"}, "fused_ops": {"list": {"s": [_s(f) for f in fused]}}, "num_args": {"i": "1"}}
    if op != "_FusedMatMul":
        attr |= {
            "strides": {"list": {"i": ["1", "1", "1", "1"]}},
            "padding": {"s": _s("SAME")},
            "data_format": {"s": _s("NHWC")},
            "dilations": {"list": {"i": ["1", "1", "1", "1"]}},
        }
    return {"name": name, "op": op, "input": inputs, "attr": attr}


def test_split_fused_ops_makes_plain_chains_that_keep_the_name():
    nodes = [
        _fused("conv", "_FusedConv2D", ["BiasAdd", "Relu6"], ["x", "w", "b"]),
        _fused("dw", "FusedDepthwiseConv2dNative", ["BiasAdd"], ["conv", "dw_w", "dw_b"]),
        _fused("fc", "_FusedMatMul", ["BiasAdd", "Relu"], ["flat", "fc_w", "fc_b"]),
        {"name": "topk", "op": "TopKV2", "input": ["fc", "k"], "attr": {"T": {"type": "DT_FLOAT"}}},
    ]
    out = split_fused_ops(nodes)
    assert [(n["name"], n["op"]) for n in out] == [
        ("conv/Conv2D", "Conv2D"),
        ("conv/BiasAdd", "BiasAdd"),
        ("conv", "Relu6"),
        ("dw/DepthwiseConv2dNative", "DepthwiseConv2dNative"),
        ("dw", "BiasAdd"),
        ("fc/MatMul", "MatMul"),
        ("fc/BiasAdd", "BiasAdd"),
        ("fc", "Relu"),
        ("topk", "TopKV2"),
    ]
    assert out[0]["input"] == ["x", "w"] and out[1]["input"] == ["conv/Conv2D", "b"]
    assert "fused_ops" not in out[0]["attr"] and out[0]["attr"]["padding"] == {"s": _s("SAME")}
    assert "data_format" not in out[6]["attr"]  # BiasAdd after MatMul
    assert out[-1]["attr"]["Tk"] == {"type": "DT_INT32"} and "index_type" in out[-1]["attr"]
    assert "fused_ops" in nodes[0]["attr"]  # the input list is not modified


def test_split_fused_ops_refuses_what_it_cannot_split():
    with pytest.raises(EdgevisionError, match="FusedBatchNorm"):
        split_fused_ops([_fused("c", "_FusedConv2D", ["FusedBatchNorm", "Relu"], ["x", "w", "a", "b", "c", "d"])])


def _tiny_tfjs(folder) -> dict:
    """A TF.js graph model: float16-quantized fused conv + uint8-quantized fused depthwise conv."""
    rng = np.random.default_rng(1)
    w = rng.normal(0, 0.5, (3, 3, 3, 4)).astype(np.float16)
    b = rng.normal(0, 0.1, 4).astype(np.float32)
    dw_q = rng.integers(0, 256, (3, 3, 4, 1)).astype(np.uint8)
    dw_b = np.zeros(4, np.float32)
    (folder / "tiny.bin").write_bytes(w.tobytes() + b.tobytes() + dw_q.tobytes() + dw_b.tobytes())
    f32 = {"dtype": {"type": "DT_FLOAT"}, "value": {"tensor": {"dtype": "DT_FLOAT"}}}
    nodes = [
        {
            "name": "x",
            "op": "Placeholder",
            "attr": {
                "dtype": {"type": "DT_FLOAT"},
                "shape": {"shape": {"dim": [{"size": "1"}, {"size": "8"}, {"size": "8"}, {"size": "3"}]}},
            },
        },
        *({"name": name, "op": "Const", "attr": f32} for name in ("w", "b", "dw_w", "dw_b")),
        _fused("conv", "_FusedConv2D", ["BiasAdd", "Relu6"], ["x", "w", "b"]),
        _fused("dw", "FusedDepthwiseConv2dNative", ["BiasAdd"], ["conv", "dw_w", "dw_b"]),
        {"name": "Identity", "op": "Identity", "input": ["dw"], "attr": {"T": {"type": "DT_FLOAT"}}},
    ]
    half = {"dtype": "float16", "original_dtype": "float32"}
    affine = {"dtype": "uint8", "scale": 0.01, "min": -1.0}
    manifest = [
        {
            "paths": ["tiny.bin"],
            "weights": [
                {"name": "w", "shape": [3, 3, 3, 4], "dtype": "float32", "quantization": half},
                {"name": "b", "shape": [4], "dtype": "float32"},
                {"name": "dw_w", "shape": [3, 3, 4, 1], "dtype": "float32", "quantization": affine},
                {"name": "dw_b", "shape": [4], "dtype": "float32"},
            ],
        }
    ]
    model = {"format": "graph-model", "modelTopology": {"node": nodes}, "weightsManifest": manifest}
    (folder / "tiny.json").write_text(json.dumps(model))
    return {"w": w.astype(np.float32), "b": b, "dw_w": dw_q * np.float32(0.01) - 1.0, "dw_b": dw_b}


def test_read_weights_dequantizes(tmp_path):
    expected = _tiny_tfjs(tmp_path)
    weights = read_weights(json.loads((tmp_path / "tiny.json").read_text()), tmp_path)
    for name, value in expected.items():
        np.testing.assert_allclose(weights[name], value, atol=1e-6)
        assert weights[name].dtype == np.float32


def test_read_weights_refuses_truncated_shards(tmp_path):
    _tiny_tfjs(tmp_path)
    (tmp_path / "tiny.bin").write_bytes((tmp_path / "tiny.bin").read_bytes()[:-20])
    with pytest.raises(EdgevisionError, match="truncated"):
        read_weights(json.loads((tmp_path / "tiny.json").read_text()), tmp_path)


def test_tiny_tfjs_model_converts_and_matches_numpy(tmp_path):
    pytest.importorskip("tensorflow")
    pytest.importorskip("tf2onnx")
    import onnxruntime as ort

    from edgevision.conversion.tfjs import tfjs_to_onnx

    weights = _tiny_tfjs(tmp_path)
    tfjs_to_onnx(tmp_path / "tiny.json", tmp_path / "tiny.onnx")
    x = np.random.default_rng(2).random((1, 8, 8, 3)).astype(np.float32)
    session = ort.InferenceSession(str(tmp_path / "tiny.onnx"))
    (got,) = session.run(None, {session.get_inputs()[0].name: x})
    want = _depthwise_same(np.clip(_conv_same(x, weights["w"]) + weights["b"], 0, 6), weights["dw_w"][..., 0])
    np.testing.assert_allclose(got, want, atol=1e-4)


def _conv_same(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = np.stack([padded[:, i : i + 8, j : j + 8] for i in range(3) for j in range(3)], 3)
    return np.einsum("nhwkc,kco->nhwo", patches, w.reshape(9, w.shape[2], w.shape[3]))


def _depthwise_same(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = np.stack([padded[:, i : i + 8, j : j + 8] for i in range(3) for j in range(3)], 3)
    return np.einsum("nhwkc,kc->nhwc", patches, w.reshape(9, w.shape[2]))


# ----------------------------------------------------------------------------- ONNX rewriting and parity


def _pad_pool_model(pad_value: float):
    from onnx import TensorProto, helper

    pads = helper.make_tensor("pads", TensorProto.INT64, [8], [0, 0, 1, 1, 0, 0, 1, 1])
    value = helper.make_tensor("value", TensorProto.FLOAT, [], [pad_value])
    graph = helper.make_graph(
        [
            helper.make_node("Pad", ["x", "pads", "value"], ["padded"], mode="constant"),
            helper.make_node("MaxPool", ["padded"], ["y"], kernel_shape=[3, 3], strides=[2, 2]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 3, 3])],
        [pads, value],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _run(model, x):
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]


def test_fold_maxpool_pads_keeps_outputs_and_drops_minus_inf():
    model = _pad_pool_model(-np.inf)
    x = -np.random.default_rng(0).random((1, 2, 6, 6)).astype(np.float32)  # negative: zero padding would show
    before = _run(model, x)
    assert fold_maxpool_pads(model) == 1
    assert [n.op_type for n in model.graph.node] == ["MaxPool"] and len(model.graph.initializer) == 0
    np.testing.assert_array_equal(_run(model, x), before)


def test_fold_maxpool_pads_leaves_zero_padding_alone():
    model = _pad_pool_model(0.0)
    assert fold_maxpool_pads(model) == 0
    assert [n.op_type for n in model.graph.node] == ["Pad", "MaxPool"]


@pytest.mark.parametrize(("delta", "ok"), [(0.0, True), (5e-5, True), (5e-3, False), (np.nan, False)])
def test_check_parity_refuses_changed_numbers(delta, ok):
    from edgevision.compare import check_parity

    want = {"y": np.linspace(0, 1, 10, dtype=np.float32)}
    got = {"y": want["y"] + np.float32(delta)}
    if ok:
        assert check_parity(want, got, tolerance=1e-4).passed
    else:
        with pytest.raises(EdgevisionError, match="refused"):
            check_parity(want, got, tolerance=1e-4)
