"""BlazePose's landmark model as the zoo serves it: cut to the outputs the decoding reads, its
pixel-regression head named in the file and kept float by every quantizer."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import onnx
import pytest

from edgevision.packages import package_archive
from edgevision.quantization import QuantizeOptions, get_quantizer
from edgevision.quantization.api import resolve_source
from edgevision.quantization.postprocess import FLOAT_NODES_KEY, declared_float_nodes, postprocessing_nodes
from edgevision.samples import POSE_PHOTOS
from edgevision.zoo import get_spec, model_file, pulled_dir
from edgevision.zoo.catalog.blazepose import (
    FULL_FILE,
    LANDMARKS_FILE,
    PARITY_TOLERANCE,
    check_landmarks,
    cut_landmarks,
    regression_head,
    rescale_quiet_stem_channels,
)
from edgevision.zoo.pull import MANIFEST, made_by_older_catalogue, model_dir

NAME = "blazepose-lite"


@pytest.fixture(scope="module")
def crops(samples_cache) -> list[np.ndarray]:
    """The landmark model's inputs for the people of the pose photos (detector included)."""
    processor = resolve_source(NAME).processor
    return [processor.preprocess(cv2.imread(str(samples_cache[name])))[0] for name in POSE_PHOTOS]


def test_the_zoo_runs_the_landmark_outputs_only(crops):
    """Landmarks and presence, as the full graph computes them, on real people."""
    path = model_file(NAME, "onnx")
    assert path.name == LANDMARKS_FILE
    model = onnx.load(str(path))
    assert [o.name for o in model.graph.output] == ["Identity", "Identity_1"]
    assert check_landmarks(path.parent / FULL_FILE, path, crops) < PARITY_TOLERANCE
    assert len(model.graph.node) < len(onnx.load(str(path.parent / FULL_FILE)).graph.node) * 3 // 4


def test_the_regression_head_is_declared_float():
    """Every node at 4x4 or below: the pose branch from its 4x4 stage to the reshapes."""
    model = onnx.load(str(model_file(NAME, "onnx")))
    head = declared_float_nodes(model)
    assert set(head) == set(regression_head(model)) and 30 <= len(head) <= 60
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    assert convs[-1] in head and convs[0] not in head  # the landmark conv float, the stem int8
    assert set(head) <= set(postprocessing_nodes(model))


def test_ort_int8_keeps_the_declared_head_float(crops, tmp_path):
    source = model_file(NAME, "onnx")
    quantizer = get_quantizer("ort")
    feeds = [{"input_1": c} for c in crops]
    out = quantizer.quantize(source, tmp_path / "int8.onnx", options=QuantizeOptions(), calibration=feeds)
    graph = onnx.load(str(out)).graph
    producer = {o: n for n in graph.node for o in n.output}
    head = declared_float_nodes(onnx.load(str(source)))
    quantized = {n.name for n in graph.node if n.op_type == "Conv" and producer.get(n.input[1]) is not None}
    assert quantized and not quantized & set(head)
    assert set(head) <= set(quantizer.kept_float)


def test_a_cut_without_a_head_is_refused(tmp_path):
    """A graph with no 4x4 stage is not BlazePose's landmark model."""
    graph = onnx.helper.make_graph(
        [
            onnx.helper.make_node("Flatten", ["x"], ["f"], name="flat"),
            onnx.helper.make_node("Slice", ["f", "s", "e"], ["Identity"], name="slice"),
            onnx.helper.make_node("ReduceMean", ["f"], ["Identity_1"], name="mean", keepdims=1),
        ],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 8, 8, 8])],
        [
            onnx.helper.make_tensor_value_info("Identity", onnx.TensorProto.FLOAT, [1, 195]),
            onnx.helper.make_tensor_value_info("Identity_1", onnx.TensorProto.FLOAT, [1, 1]),
        ],
        [
            onnx.numpy_helper.from_array(np.array([0], np.int64), "s"),
            onnx.numpy_helper.from_array(np.array([195], np.int64), "e"),
        ],
    )
    full = tmp_path / "full.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)]), str(full))
    with pytest.raises(Exception, match="regression head"):
        cut_landmarks(full, tmp_path / "cut.onnx")


def stem_model(quiet: float) -> onnx.ModelProto:
    """Input [0, 1] -> Conv (channel 1 with tiny weights) -> Clip(0, 6) -> depthwise 3x3 -> output."""
    rng = np.random.default_rng(0)
    stem = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    stem[1] = np.abs(stem[1]) * quiet
    dw = rng.standard_normal((2, 1, 3, 3)).astype(np.float32)
    dw[1] *= 1000.0
    inits = [
        onnx.numpy_helper.from_array(stem, "w0"),
        onnx.numpy_helper.from_array(np.array([0.1, 0.0], np.float32), "b0"),
        onnx.numpy_helper.from_array(np.float32(0.0), "lo"),
        onnx.numpy_helper.from_array(np.float32(6.0), "hi"),
        onnx.numpy_helper.from_array(dw, "w1"),
    ]
    nodes = [
        onnx.helper.make_node("Conv", ["x", "w0", "b0"], ["z"], name="stem", pads=[1, 1, 1, 1]),
        onnx.helper.make_node("Clip", ["z", "lo", "hi"], ["a"], name="relu6"),
        onnx.helper.make_node("Conv", ["a", "w1"], ["y"], name="dw", group=2, pads=[1, 1, 1, 1]),
    ]
    io = [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [1, c, 8, 8]) for n, c in (("x", 3), ("y", 2))]
    graph = onnx.helper.make_graph(nodes, "g", io[:1], io[1:], inits)
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)])


def test_quiet_stem_channels_are_rescaled_exactly():
    """The quiet channel fills 0-6 after rescaling, and the network computes the same thing."""
    import onnxruntime as ort

    x = {"x": np.random.default_rng(1).random((1, 3, 8, 8)).astype(np.float32)}
    model = stem_model(0.01)
    before = ort.InferenceSession(model.SerializeToString()).run(None, x)[0]
    factors = rescale_quiet_stem_channels(model)
    assert list(factors) == [1] and factors[1] > 10
    after = ort.InferenceSession(model.SerializeToString()).run(None, x)[0]
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-3)
    weights, bias = (onnx.numpy_helper.to_array(t) for t in model.graph.initializer[:2])
    assert bias[1] + weights[1].clip(0).sum() == pytest.approx(6.0, rel=1e-5)  # its bound is now the ReLU6's
    assert rescale_quiet_stem_channels(stem_model(1.0)) == {}  # a channel that can reach 6 stays


def test_the_zoo_stem_channel_that_feeds_the_1294_filter_is_rescaled():
    model = onnx.load(str(model_file(NAME, "onnx")))
    assert "10 x" in model.doc_string  # channel 10: at most 0.054 on real crops, then weights up to 1294


@pytest.mark.slow
def test_a_cache_of_the_full_graph_is_rebuilt_not_served(tmp_path, monkeypatch):
    """A folder pulled when the zoo ran model.onnx gets the cut file, rebuilt offline."""
    spec = get_spec(NAME)
    root = tmp_path / "cache"
    old = root / "models" / NAME
    shutil.copytree(pulled_dir(NAME), old)
    (old / LANDMARKS_FILE).unlink()
    manifest = json.loads((old / MANIFEST).read_text())
    del manifest["files"][LANDMARKS_FILE]  # what an older edgevision recorded
    (old / MANIFEST).write_text(json.dumps(manifest))
    for artifact in {a.package: a for a in spec.artifacts}.values():
        archive = package_archive(artifact)
        link = root / "packages" / archive.parent.name / archive.name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(archive)
    monkeypatch.setenv("EDGEVISION_CACHE", str(root))
    assert model_dir(NAME) == old and made_by_older_catalogue(spec, old)
    path = model_file(NAME, "onnx")
    assert path == old / LANDMARKS_FILE and not made_by_older_catalogue(spec, old)
    assert FLOAT_NODES_KEY in {p.key for p in onnx.load(str(path), load_external_data=False).metadata_props}
