"""Decoders of the MediaPipe TFLite families (SSD, BlazePose) on synthetic outputs: no real models."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from edgevision.errors import EdgevisionError
from edgevision.models.blazepose import (
    BLAZEPOSE_KEYPOINTS,
    POSE_DETECTION_ANCHORS,
    BlazePosePredictor,
    PoseDetectorProcessor,
    Roi,
    crop_roi,
    decode_landmarks,
    roi_from_keypoints,
)
from edgevision.models.ssd import OIDV4_ANCHORS, SsdProcessor, ssd_anchors
from edgevision.models.transforms import letterbox, resize
from edgevision.types import TensorSpec

LABELS = ("???", "Bicycle", "Boot", "Laptop", "Person") + tuple(f"class{i}" for i in range(5, 24))


# ----------------------------------------------------------------------------- anchors


def test_oidv4_anchor_count_and_layout():
    anchors = ssd_anchors(OIDV4_ANCHORS)
    assert anchors.shape == (1917, 4)
    # lowest layer (19x19, reduced): scale 0.1 square, then 0.2 at aspect 2 and 0.5
    np.testing.assert_allclose(anchors[0], [0.5 / 19, 0.5 / 19, 0.1, 0.1], rtol=1e-6)
    np.testing.assert_allclose(anchors[1, 2:], [0.2 * math.sqrt(2), 0.2 / math.sqrt(2)], rtol=1e-6)
    assert len(np.unique(anchors[:1083, :2], axis=0)) == 19 * 19
    # last layer is 1x1: centred, the interpolated anchor uses sqrt(0.95 * 1.0)
    np.testing.assert_allclose(anchors[-1], [0.5, 0.5, math.sqrt(0.95), math.sqrt(0.95)], rtol=1e-6)


def test_pose_detection_anchor_count_and_fixed_size():
    anchors = ssd_anchors(POSE_DETECTION_ANCHORS)
    assert anchors.shape == (2254, 4)
    assert np.all(anchors[:, 2:] == 1.0)
    np.testing.assert_allclose(anchors[0, :2], [0.5 / 28, 0.5 / 28])
    np.testing.assert_allclose(anchors[-1, :2], [6.5 / 7, 6.5 / 7])


# ----------------------------------------------------------------------------- SSD decoding


def _ssd_outputs(strong: dict[int, tuple[int, list[float]]] | None = None, low: float = -8.0):
    boxes = np.zeros((1, 1917, 4), np.float32)
    logits = np.full((1, 1917, 24), low, np.float32)
    for anchor, (class_id, raw) in (strong or {}).items():
        boxes[0, anchor] = raw
        logits[0, anchor, class_id] = 6.0
    return {"raw_outputs/box_encodings": boxes, "raw_outputs/class_predictions": logits}


def test_ssd_one_strong_anchor_decodes_to_source_pixels():
    processor = SsdProcessor(class_names=LABELS)
    anchor = 1083 + 6 * (4 * 10 + 7) + 2  # layer 1 (10x10), cell row 4 col 7, aspect 0.5
    cx, cy, aw, ah = processor.anchors[anchor]
    # raw order is (y, x, h, w): shift y by +1/10 of the anchor height, double the width
    raw = [1.0, -2.0, 0.0, 5.0 * math.log(2.0)]
    _, transform = resize(np.zeros((400, 600, 3), np.uint8), (300, 300))

    det = processor.decode(_ssd_outputs({anchor: (4, raw)}), transform)

    x = cx - 2.0 / 10 * aw
    y = cy + 1.0 / 10 * ah
    expected = np.array([(x - aw) * 600, (y - ah / 2) * 400, (x + aw) * 600, (y + ah / 2) * 400])
    assert len(det) == 1
    np.testing.assert_allclose(det.xyxy[0], np.clip(expected, 0, [600, 400, 600, 400]), atol=1e-3)
    assert det.label(0) == "Person"
    assert det.scores[0] == pytest.approx(1 / (1 + math.exp(-6.0)), rel=1e-5)


def test_ssd_all_low_logits_give_no_detections():
    _, transform = resize(np.zeros((50, 80, 3), np.uint8), (300, 300))
    det = SsdProcessor(class_names=LABELS).decode(_ssd_outputs(), transform)
    assert len(det) == 0
    assert det.class_names == LABELS


def test_ssd_background_class_is_never_reported():
    _, transform = resize(np.zeros((300, 300, 3), np.uint8), (300, 300))
    det = SsdProcessor(class_names=LABELS).decode(_ssd_outputs({500: (0, [0, 0, 0, 0])}), transform)
    assert len(det) == 0


def _raw_for(anchor: np.ndarray, box: tuple[float, float, float, float]) -> list[float]:
    """Raw (y, x, h, w) regressors that make ``anchor`` decode to normalised ``(cx, cy, w, h)``."""
    cx, cy, w, h = box
    y, x = (cy - anchor[1]) * 10 / anchor[3], (cx - anchor[0]) * 10 / anchor[2]
    return [y, x, 5 * math.log(h / anchor[3]), 5 * math.log(w / anchor[2])]


def test_ssd_nms_is_class_aware():
    processor = SsdProcessor(class_names=LABELS)
    a = processor.anchors
    same_place = {
        1500: (4, _raw_for(a[1500], (0.5, 0.5, 0.3, 0.4))),
        1501: (4, _raw_for(a[1501], (0.51, 0.5, 0.3, 0.4))),  # same class, overlapping: suppressed
        1502: (1, _raw_for(a[1502], (0.5, 0.5, 0.3, 0.4))),  # other class, same place: kept
    }
    det = processor.decode(_ssd_outputs(same_place), resize(np.zeros((300, 300, 3), np.uint8), (300, 300))[1])
    assert sorted(det.class_ids.tolist()) == [1, 4]


def test_oidv4_label_constant_matches_the_pinned_label_map():
    import hashlib

    from edgevision.models.ssd import OIDV4_LABELS
    from edgevision.zoo.catalog.ssd import _LABELMAP

    text = "".join(f"{name}\n" for name in OIDV4_LABELS).encode()
    assert len(OIDV4_LABELS) == 24 and len(text) == _LABELMAP.size
    assert hashlib.sha256(text).hexdigest() == _LABELMAP.sha256


def test_ssd_rejects_outputs_of_another_model():
    with pytest.raises(EdgevisionError, match="expected SSD outputs"):
        SsdProcessor(class_names=LABELS).split_outputs({"a": np.zeros((1, 1917, 91), np.float32)})


# ----------------------------------------------------------------------------- pose detector


def test_pose_detector_decodes_box_and_keypoints_through_letterbox():
    processor = PoseDetectorProcessor()
    image = np.zeros((448, 224, 3), np.uint8)  # tall: letterboxed with bars left and right
    _, transform = letterbox(image, (224, 224), pad_value=0)
    raw = np.zeros((1, 2254, 12), np.float32)
    logits = np.full((1, 2254, 1), -20.0, np.float32)
    anchor = 28 * 28 * 2 + 14 * 2 * 7 + 2 * 7  # 14x14 layer, row 7 col 7 -> centre (7.5/14, 7.5/14)
    raw[0, anchor, :4] = [0.0, 0.0, 56.0, 112.0]  # x, y, w, h in 224-pixel units
    raw[0, anchor, 4:6] = [0.0, 30.0]  # hip centre 30 px below the anchor centre
    logits[0, anchor, 0] = 5.0

    people = processor.decode({"Identity": raw, "Identity_1": logits}, transform)

    centre = 7.5 / 14 * 224
    assert people.scores.shape == (1,)
    # letterbox: scale 0.5, horizontal pad 56 px
    expected = [(centre - 28 - 56) * 2, (centre - 56) * 2, (centre + 28 - 56) * 2, (centre + 56) * 2]
    np.testing.assert_allclose(people.xyxy[0], expected, atol=1e-3)
    np.testing.assert_allclose(people.keypoints[0, 0], [(centre - 56) * 2, (centre + 30) * 2], atol=1e-3)


def test_pose_detector_finds_nobody_in_low_scores():
    people = PoseDetectorProcessor().decode(
        {"Identity": np.zeros((1, 2254, 12), np.float32), "Identity_1": np.full((1, 2254, 1), -3.0, np.float32)},
        letterbox(np.zeros((10, 10, 3), np.uint8), (224, 224))[1],
    )
    assert people.scores.shape == (0,) and people.keypoints.shape == (0, 4, 2)


# ----------------------------------------------------------------------------- ROI geometry


@pytest.mark.parametrize("rotation", [0.0, 0.7, -2.5, math.pi])
def test_roi_round_trip_returns_points_to_themselves(rotation):
    roi = Roi(center=(310.0, 205.0), size=180.0, rotation=rotation)
    points = np.random.default_rng(1).uniform(0, 500, (20, 2)).astype(np.float32)
    back = roi.to_source(roi.from_source(points, 256), 256)
    np.testing.assert_allclose(back, points, atol=1e-3)


def test_roi_crop_puts_source_pixels_where_the_matrix_says():
    image = np.zeros((300, 400, 3), np.uint8)
    image[120, 250] = 255
    roi = Roi(center=(200.0, 150.0), size=256.0, rotation=0.5)
    crop = crop_roi(image, roi, 256)
    where = np.unravel_index(crop[..., 0].argmax(), crop.shape[:2])[::-1]
    np.testing.assert_allclose(where, roi.from_source(np.array([250.0, 120.0]), 256), atol=1.0)


@pytest.mark.parametrize("direction", [(0, -1), (1, 0), (-1, 1), (0.3, 1)])
def test_roi_puts_the_body_point_straight_above_the_hips(direction):
    hip = np.array([100.0, 200.0])
    body = hip + 80.0 * np.asarray(direction) / np.hypot(*direction)
    roi = roi_from_keypoints(hip, body)
    assert roi.size == pytest.approx(2 * 80.0 * 1.25)
    x, y = roi.from_source(body, 256)
    assert x == pytest.approx(128.0, abs=1e-3)
    assert y == pytest.approx(128.0 - 80.0 * 256 / roi.size, abs=1e-3)


def test_upright_person_needs_no_rotation():
    assert roi_from_keypoints(np.array([50.0, 90.0]), np.array([50.0, 10.0])).rotation == pytest.approx(0.0)


# ----------------------------------------------------------------------------- landmarks and predictor


def test_landmark_decoding_and_bad_outputs():
    raw = np.zeros((1, 195), np.float32)
    raw[0, 5 * 11 : 5 * 11 + 4] = [40.0, 60.0, 0.0, 10.0]  # left shoulder, very visible
    result = decode_landmarks({"Identity": raw, "Identity_1": np.array([[0.97]], np.float32)})
    assert result.xy.shape == (33, 2) and result.presence == pytest.approx(0.97)
    np.testing.assert_allclose(result.xy[11], [40.0, 60.0])
    assert result.visibility[11] > 0.99 and result.visibility[0] == pytest.approx(0.5)
    with pytest.raises(EdgevisionError, match="BlazePose landmark"):
        decode_landmarks({"Identity": np.zeros((1, 99), np.float32)})


def _fake_backend(outputs: dict[str, np.ndarray], shape: tuple[int, ...]):
    return SimpleNamespace(inputs=[TensorSpec("input_1", shape, "float32")], run=lambda feeds: outputs)


def test_no_person_gives_empty_poses():
    detector = _fake_backend(
        {"Identity": np.zeros((1, 2254, 12), np.float32), "Identity_1": np.full((1, 2254, 1), -9.0, np.float32)},
        (1, 224, 224, 3),
    )
    landmarks = _fake_backend({}, (1, 256, 256, 3))
    poses = BlazePosePredictor(detector, landmarks)(np.zeros((120, 160, 3), np.uint8))
    assert len(poses) == 0
    assert poses.keypoint_names == BLAZEPOSE_KEYPOINTS and poses.keypoints.shape == (0, 33, 3)


def test_landmark_boxes_span_the_landmarks_inside_the_image():
    from edgevision.models.blazepose import landmark_boxes

    kps = np.zeros((1, 33, 3), np.float32)
    kps[0, :, 0] = np.linspace(20, 90, 33)
    kps[0, :, 1] = np.linspace(-15, 140, 33)
    np.testing.assert_allclose(landmark_boxes(kps, 100, 120), [[20, 0, 90, 120]])


# ----------------------------------------------------------------------------- TFLite -> ONNX helpers


def test_parity_check_refuses_a_large_difference():
    from edgevision.compare import check_parity
    from edgevision.conversion.tflite import PARITY_TOLERANCE

    want = {"y": np.linspace(-3, 3, 10, dtype=np.float32)}
    report = check_parity(want, {"y": want["y"] + 1e-4}, tolerance=PARITY_TOLERANCE, reference="LiteRT")
    assert report.outputs[0].max_abs_diff == pytest.approx(1e-4, rel=1e-2)
    with pytest.raises(EdgevisionError, match="differs from LiteRT"):
        check_parity(want, {"y": want["y"] + 0.05}, tolerance=PARITY_TOLERANCE, reference="LiteRT")
    with pytest.raises(EdgevisionError, match="lacks outputs"):
        check_parity(want, {}, tolerance=PARITY_TOLERANCE, reference="LiteRT")


def test_fp16_weights_behind_a_cast_are_folded_to_float32():
    onnx = pytest.importorskip("onnx")
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from edgevision.conversion.tflite import fold_fp16_initializers

    weight = np.array([[1.5, -2.0], [0.25, 4.0]], np.float16)
    graph = helper.make_graph(
        [helper.make_node("Cast", ["w16"], ["w"], to=TensorProto.FLOAT), helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [numpy_helper.from_array(weight, "w16")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    assert fold_fp16_initializers(model) == 1
    assert [n.op_type for n in model.graph.node] == ["MatMul"]
    assert [t.data_type for t in model.graph.initializer] == [TensorProto.FLOAT]
    onnx.checker.check_model(model)
    x = np.array([[1.0, 2.0]], np.float32)
    y = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(y, x @ weight.astype(np.float32))


def test_synthetic_image_fills_the_requested_range():
    from edgevision.conversion.tflite import synthetic_image

    image = synthetic_image(64, 48, (-1.0, 1.0))
    assert image.shape == (64, 48, 3) and image.dtype == np.float32
    assert -1.0 <= image.min() < -0.5 and 0.5 < image.max() <= 1.0


def test_missing_tf2onnx_names_the_extra(monkeypatch, tmp_path):
    import sys

    from edgevision.conversion.tflite import tflite_to_onnx
    from edgevision.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "tf2onnx", None)
    with pytest.raises(MissingExtraError, match=r"edgevision\[convert\]"):
        tflite_to_onnx(tmp_path / "m.tflite", tmp_path / "m.onnx")
