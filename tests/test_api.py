"""The public Python API: what the README shows, on real models and tiny ones built here."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import cv2
import numpy as np
import pytest

import edgevision as ev
from edgevision.variants import read_meta


def test_the_front_door_lists_the_api():
    for name in ("load", "convert", "optimize", "quantize", "bench", "run", "Model", "QuantizeOptions", "BenchOptions"):
        assert name in ev.__all__ and getattr(ev, name) is getattr(ev.api, name)
    assert {"Detections", "Poses", "RawOutputs", "Frame", "EdgevisionError"} <= set(ev.__all__)


def test_load_predicts_the_people_on_the_first_frame(first_frame):
    model = ev.load("nanodet-m", threads=2)
    found = model.predict(first_frame)
    people = [i for i in range(len(found)) if found.label(i) == "person" and found.scores[i] >= 0.4]
    assert model.task == "detection" and model.runtime == "onnxruntime" and not model.random_weights
    assert len(people) >= 3
    assert model(first_frame).xyxy.tolist() == found.xyxy.tolist()  # calling the model is predict


def test_the_readme_one_liner(first_frame, tmp_path):
    cv2.imwrite(str(tmp_path / "frame.jpg"), first_frame)
    code = "import cv2, edgevision as ev; print(ev.load('nanodet-m').predict(cv2.imread('frame.jpg')))"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Detections(") and done.stdout.count("person") >= 3, done.stdout


def test_predict_many_gives_every_frame_in_order(short_video):
    model = ev.load("nanodet-m", threads=2)
    indices = [frame.index for frame, prediction in model.predict_many(short_video) if prediction.task == "detection"]
    assert indices == list(range(12))


def test_a_file_without_a_decoder_gives_raw_outputs(tiny_model_files, first_frame):
    model = ev.load(tiny_model_files["onnxruntime"])
    outputs = model.predict(first_frame)
    assert model.task == "raw" and outputs.task == "raw"
    assert set(outputs.tensors) == {"logits", "features"} and outputs.tensors["logits"].shape == (1, 4)


def test_unknown_names_and_options_are_refused():
    with pytest.raises(ev.EdgevisionError, match="did you mean nanodet-m"):
        ev.load("nanodet")
    with pytest.raises(TypeError):  # options are keyword-only and typed: a typo is not silently ignored
        ev.quantize("nanodet-m", precison="int8")
    with pytest.raises(ev.EdgevisionError, match="unknown precision"):
        ev.quantize("nanodet-m", precision="int3")
    with pytest.raises(ev.EdgevisionError, match="whole numbers"):
        ev.bench("nanodet-m", threads="two")


def test_options_objects_hold_one_default_budget():
    assert ev.QuantizeOptions().max_drop == ev.BenchOptions().max_drop == ev.api.DEFAULT_MAX_DROP == 0.02
    assert ev.api.DemoOptions().max_drop == ev.api.DEFAULT_MAX_DROP
    fields = {f.name for f in dataclasses.fields(ev.QuantizeOptions)}
    assert {"precision", "max_drop", "strict", "calib", "threads", "method", "exclude"} <= fields


def test_quantize_keywords_and_options_object_agree(tiny_onnx_and_images, tmp_path):
    model, images = tiny_onnx_and_images
    by_keywords = ev.quantize(
        model, backend="ort", precision="int8", calib=str(images), max_drop=None, output=tmp_path / "a.onnx"
    )
    options = ev.QuantizeOptions(precision="int8", calib=str(images), max_drop=None)
    by_object = ev.quantize(model, backend="ort", options=options, output=tmp_path / "b.onnx")
    assert by_keywords.output_bytes == by_object.output_bytes and by_keywords.budget_met is None
    assert read_meta(tmp_path / "a.onnx").precision == "int8"


def test_quantize_writes_no_file_the_backend_cannot_make(tiny_onnx_and_images, tmp_path):
    model, images = tiny_onnx_and_images
    with pytest.raises(ev.EdgevisionError, match="writes .onnx files"):
        ev.quantize(model, backend="ort", precision="int8", calib=str(images), output=tmp_path / "x.tflite")
    assert not (tmp_path / "x.tflite").exists()


def test_convert_through_the_api(tiny_onnx_and_images, tmp_path):
    model, _ = tiny_onnx_and_images
    result = ev.convert(model, to="openvino", output=tmp_path / "tiny.xml")
    assert result.parity.passed and result.path.exists() and result.meta.runtime == "openvino"


@pytest.fixture(scope="module")
def tiny_onnx_and_images(tmp_path_factory):
    """A small conv net taking 32x32 RGB images, and a folder of photos-like images."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("api")
    weight = numpy_helper.from_array(rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "w")
    bias = numpy_helper.from_array(np.zeros(4, np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["images", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["y"], name="relu"),
        ],
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 32, 32])],
        [weight, bias],
    )
    path = folder / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    images = folder / "images"
    images.mkdir()
    for i in range(12):
        cv2.imwrite(str(images / f"{i:02d}.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    return path, images
