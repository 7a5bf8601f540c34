"""`predict` end to end on the real sample video and photos, on every runtime."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from conftest import run_cli
from edgevision.backends import list_backends
from edgevision.zoo import get_spec
from edgevision.zoo.assemble import load_predictor


def people(detections, min_score=0.4):
    return detections[
        (detections.scores >= min_score)
        & np.array([detections.label(i).lower() == "person" for i in range(len(detections))], bool)
    ]


def test_nanodet_finds_the_pedestrians(first_frame):
    found = people(load_predictor("nanodet-m")(first_frame))
    assert len(found) >= 3
    heights = found.xyxy[:, 3] - found.xyxy[:, 1]
    assert np.all((heights > 30) & (heights < 400))  # people at this camera's distance


def test_multipose_draws_skeletons(first_frame):
    poses = load_predictor("movenet-multipose")(first_frame)
    assert len(poses) >= 2
    confident = (poses.keypoints[:, :, 2] > 0.3).sum(axis=1)
    assert (confident >= 6).sum() >= 2
    h, w = first_frame.shape[:2]
    seen = poses.keypoints[poses.keypoints[:, :, 2] > 0.3]
    assert np.all((seen[:, 0] >= 0) & (seen[:, 0] <= w) & (seen[:, 1] >= 0) & (seen[:, 1] <= h))


def _backends_for(name: str) -> list[str]:
    spec = get_spec(name)
    found = ["onnxruntime"] if "onnx" in spec.files else []
    if "onnx" in spec.files and "openvino" in list_backends(available_only=True):
        found.append("openvino")
    if "tflite" in spec.files:
        found.append("litert")
    return found


def _match_boxes(a: np.ndarray, b: np.ndarray) -> float:
    """Largest distance (pixels) from a box in ``a`` to its nearest box in ``b``."""
    if len(a) == 0:
        return 0.0
    distance = np.abs(a[:, None, :] - b[None, :, :]).max(axis=2)
    return float(distance.min(axis=1).max())


@pytest.mark.parametrize(
    "name", ["nanodet-m", "movenet-multipose", "movenet-lightning", "ssd-mobilenetv2-oidv4", "blazepose-lite"]
)
def test_same_predictions_on_every_runtime(name, first_frame, samples_cache):
    from edgevision.zoo import list_models

    if name not in list_models():
        pytest.fail(f"{name} is not in the zoo")
    image = first_frame if name != "blazepose-lite" else cv2.imread(str(samples_cache["person.jpg"]))
    results = {b: load_predictor(name, backend=b, threads=2)(image) for b in _backends_for(name)}
    assert len(results) >= 2, results.keys()
    reference = results.pop("onnxruntime")
    for backend, other in results.items():
        floor = 0.5 if reference.task == "detection" else 0.25
        strong_ref = reference[reference.scores >= floor]
        strong = other[other.scores >= floor]
        assert len(strong_ref) >= 1, backend
        assert abs(len(strong_ref) - len(strong)) <= 1, backend
        if reference.task == "detection":
            assert _match_boxes(strong_ref.xyxy, other.xyxy) < 4.0, backend
        else:
            ref_kp, kp = strong_ref.keypoints, strong.keypoints
            n = min(len(ref_kp), len(kp))
            ordered = sorted(range(len(kp)), key=lambda j: -float(strong.scores[j]))[:n]
            ref_order = sorted(range(len(ref_kp)), key=lambda j: -float(strong_ref.scores[j]))[:n]
            assert np.abs(ref_kp[ref_order, :, :2] - kp[ordered, :, :2]).max() < 6.0, backend


def test_predict_video_writes_every_frame(short_video, tmp_path):
    out, jsonl = tmp_path / "out.mp4", tmp_path / "det.jsonl"
    done = run_cli("predict", "nanodet-m", short_video, "-o", out, "--json", jsonl, "--threads", "2")
    assert done.returncode == 0, done.stderr
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    ok, frame = cap.read()
    assert ok and frame.shape == (576, 768, 3)
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(12))
    objects = records[0]["objects"]
    assert any(o["label"] == "person" and o["score"] >= 0.4 for o in objects)
    assert all(len(o["box"]) == 4 and set(o) >= {"label", "score", "box"} for o in objects)
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_predict_image_folder_with_pose_json_on_stdout(samples_cache, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("person.jpg", "messi5.jpg"):
        (folder / name).write_bytes(samples_cache[name].read_bytes())
    out = tmp_path / "annotated"
    done = run_cli("predict", "movenet-thunder", folder, "-o", out, "--json", "-")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["source"].rsplit("/", 1)[-1] for r in records] == ["messi5.jpg", "person.jpg"]
    person = records[1]["objects"][0]
    assert set(person["keypoints"]) >= {"nose", "left_ankle", "right_wrist"}
    annotated = cv2.imread(str(out / "person.jpg"))
    original = cv2.imread(str(samples_cache["person.jpg"]))
    assert annotated.shape == original.shape and np.abs(annotated.astype(int) - original).sum() > 0


def test_predict_glob(samples_cache, tmp_path):
    pattern = str(samples_cache["dog.jpg"].parent / "*.jpg")
    done = run_cli("predict", "nanodet-m", pattern, "--no-save", "--json", tmp_path / "out.jsonl")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    by_name = {r["source"].rsplit("/", 1)[-1]: {o["label"] for o in r["objects"]} for r in records}
    assert "dog" in by_name["dog.jpg"] and "horse" in by_name["horses.jpg"]


def test_a_pulled_zoo_file_decodes_as_its_model(first_frame):
    from edgevision.zoo import model_file

    detections = load_predictor(str(model_file("nanodet-m", "onnx")))(first_frame)
    assert detections.task == "detection" and len(people(detections)) >= 3


def test_an_unrelated_onnx_file_reports_raw_outputs(tiny_model_files, first_frame):
    assert load_predictor(str(tiny_model_files["onnxruntime"]))(first_frame).task == "raw"
