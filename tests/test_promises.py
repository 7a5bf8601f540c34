"""Promises the rest of the suite did not hold: each test here fails when its promise breaks.

* ``--precision auto`` repairs a missed accuracy budget by keeping layers float, and
  ``--strict`` turns a budget it cannot repair into a non-zero exit.
* OpenVINO int8 (NNCF) really keeps the named layers float.
* ``bench`` times every variant and thread count in a process of its own.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgevision
from conftest import QUICK_TIMING, fastest_within_budget, run_cli
from edgevision.compare import DEFAULT_MAX_DROP
from edgevision.quantization import QuantizeOptions, get_quantizer
from edgevision.variants import read_meta

# ----------------------------------------------------------------------------- tiny models


def _save(path: Path, nodes, inits, outputs=("big", "small")) -> Path:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def outlier_head_model(path: Path) -> Path:
    """conv0 -> relu0 -> head (1x1 conv) -> split -> "big", "small".

    The head's first channel is 1000x its second, and both leave the conv as one tensor:
    with one int8 scale for that tensor the small channel rounds to almost nothing. Keeping
    the head float repairs it; nothing else does.
    """
    rng = np.random.default_rng(0)
    w0 = rng.normal(0, 0.5, (4, 3, 3, 3)).astype(np.float32)
    w1 = rng.normal(0, 0.5, (2, 4, 1, 1)).astype(np.float32)
    w1[0] *= 1000.0
    nodes = [
        helper.make_node("Conv", ["images", "w0"], ["c0"], name="conv0", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
        helper.make_node("Conv", ["r0", "w1"], ["h"], name="head"),
        helper.make_node("Split", ["h"], ["big", "small"], name="split", axis=1, num_outputs=2),
    ]
    inits = [numpy_helper.from_array(w0, "w0"), numpy_helper.from_array(w1, "w1")]
    return _save(path, nodes, inits)


def outlier_body_model(path: Path) -> Path:
    """conv0 (one channel 1000x the other) -> add -> head (identity 1x1 conv) -> split.

    The crushing happens at the Add, which the budget loop never keeps float (only weighted
    layers and the output head are candidates): the budget cannot be met.
    """
    rng = np.random.default_rng(0)
    w0 = rng.normal(0, 0.5, (2, 3, 3, 3)).astype(np.float32)
    w0[0] *= 1000.0
    inits = [
        numpy_helper.from_array(w0, "w0"),
        numpy_helper.from_array(np.full((1, 2, 1, 1), 0.5, np.float32), "bias"),
        numpy_helper.from_array(np.eye(2, dtype=np.float32).reshape(2, 2, 1, 1), "w1"),
    ]
    nodes = [
        helper.make_node("Conv", ["images", "w0"], ["c0"], name="conv0", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c0", "bias"], ["a0"], name="add"),
        helper.make_node("Conv", ["a0", "w1"], ["h"], name="head"),
        helper.make_node("Split", ["h"], ["big", "small"], name="split", axis=1, num_outputs=2),
    ]
    return _save(path, nodes, inits)


@pytest.fixture(scope="module")
def calib_images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("calib-images")
    rng = np.random.default_rng(0)
    for i in range(16):
        cv2.imwrite(str(folder / f"{i:02d}.png"), rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    return folder


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _weight_is_float(model_path: Path, conv_name: str) -> bool:
    """The Conv's weight input is a float initializer, not the output of a DequantizeLinear."""
    graph = onnx.load(str(model_path)).graph
    conv = next(n for n in graph.node if n.name == conv_name)
    return conv.input[1] in {t.name for t in graph.initializer if t.data_type == TensorProto.FLOAT}


# ----------------------------------------------------------------------------- the budget loop


def test_auto_precision_keeps_the_head_float_when_all_int8_misses_the_budget(tmp_path, calib_images):
    source = outlier_head_model(tmp_path / "head.onnx")
    out = tmp_path / "auto" / "model.onnx"
    result = edgevision.quantize(
        source, backend="ort", precision="auto", calib=str(calib_images), output=out, default_holdout=False
    )
    first, last = result.attempts[0], result.attempts[-1]
    # All layers int8 misses the default budget by far ...
    assert first["excluded"] == 0 and 1.0 - first["agreement"] > DEFAULT_MAX_DROP, result.attempts
    # ... and the loop repairs it by keeping the head float.
    assert len(result.attempts) >= 2 and last["excluded"] > 0
    assert result.budget_met is True and 1.0 - result.agreement <= DEFAULT_MAX_DROP
    assert "head" in result.excluded and "conv0" not in result.excluded
    meta = read_meta(out)
    assert meta.excluded == result.excluded and meta.agreement["met"] is True
    assert meta.agreement["max_drop"] == DEFAULT_MAX_DROP

    # The file written is that repaired variant: head float, the rest still int8, outputs close.
    assert _weight_is_float(out, "head") and not _weight_is_float(out, "conv0")
    import onnxruntime as ort

    rng = np.random.default_rng(7)
    x = rng.integers(0, 255, (1, 3, 16, 16)).astype(np.float32) / 255.0
    want = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]).run(None, {"images": x})
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"images": x})
    assert min(_cosine(w, g) for w, g in zip(want, got)) > 1.0 - DEFAULT_MAX_DROP


def _quantize_cli(source: Path, calib: Path, out: Path, *extra: str):
    return run_cli("quantize", source, "--precision", "auto", "--calib", calib, "--count", "12", "-o", out, *extra)


def test_strict_turns_a_missed_budget_into_a_failing_exit(tmp_path, calib_images, samples_cache):
    source = outlier_body_model(tmp_path / "body.onnx")

    lenient = _quantize_cli(source, calib_images, tmp_path / "lenient.onnx")
    assert lenient.returncode == 0, lenient.stderr
    assert "budget not met" in lenient.stderr and "Traceback" not in lenient.stderr
    meta = read_meta(tmp_path / "lenient.onnx")
    assert meta.agreement["met"] is False and 1.0 - meta.agreement["value"] > DEFAULT_MAX_DROP
    assert len(meta.agreement["attempts"]) >= 2  # the loop tried, and could not repair it

    strict = _quantize_cli(source, calib_images, tmp_path / "strict.onnx", "--strict")
    assert strict.returncode != 0, strict.stderr
    assert "misses the budget" in strict.stderr and "Traceback" not in strict.stderr
    assert read_meta(tmp_path / "strict.onnx").agreement["met"] is False  # the best variant is still kept


# ----------------------------------------------------------------------------- OpenVINO ignored scope


def three_conv_model(path: Path) -> Path:
    """conv1 -> relu1 -> conv2 -> relu2 -> conv3, 3x32x32 in, one feature map out."""
    rng = np.random.default_rng(0)

    def weight(name, *shape):
        return numpy_helper.from_array(rng.normal(0, 0.2, shape).astype(np.float32), name)

    inits = [weight("w1", 16, 3, 3, 3), weight("b1", 16), weight("w2", 16, 16, 3, 3), weight("b2", 16)]
    inits += [weight("w3", 8, 16, 1, 1), weight("b3", 8)]
    nodes = [
        helper.make_node("Conv", ["images", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r2", "w3", "b3"], ["features"], name="conv3"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 8, 32, 32])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


# Ops that only move or pick values: a quantizer on their input also quantizes what they feed.
_PASS_THROUGH = {"MaxPool", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "StridedSlice", "Split", "Pad"}
_QUANTIZERS = {"FakeQuantize", "FakeConvert"}
_INT_TYPES = {"i4", "u4", "i8", "u8"}


def _activation_quantized(op) -> bool:
    """Whether the data input of ``op`` comes out of a FakeQuantize / FakeConvert."""
    node = op.input(0).get_source_output().get_node()
    while node.get_type_name() in _PASS_THROUGH:
        node = node.input(0).get_source_output().get_node()
    return node.get_type_name() in _QUANTIZERS


def _weights(op):
    """The float weights feeding ``op`` when they are a plain float constant, else None.

    Quantized weights arrive as an integer constant through Convert (and Subtract/Multiply),
    or through a FakeQuantize / FakeConvert.
    """
    node = op.input(1).get_source_output().get_node()
    if node.get_type_name() != "Constant" or node.get_element_type().get_type_name() not in ("f32", "f16"):
        return None
    return node.get_data().astype(np.float32)


def _int_weights(op) -> bool:
    """Whether the weights of ``op`` are stored as integers (or fake-quantized)."""
    stack, seen = [op.input(1).get_source_output().get_node()], set()
    while stack:
        node = stack.pop()
        if node.get_friendly_name() in seen:
            continue
        seen.add(node.get_friendly_name())
        if node.get_type_name() in _QUANTIZERS:
            return True
        if node.get_type_name() == "Constant" and node.get_element_type().get_type_name() in _INT_TYPES:
            return True
        stack.extend(i.get_source_output().get_node() for i in node.inputs())
    return False


def _convolutions(xml: Path) -> dict:
    import openvino as ov

    model = ov.Core().read_model(str(xml))
    return {
        op.get_friendly_name().split("/")[0]: op
        for op in model.get_ordered_ops()
        if op.get_type_name() == "Convolution"
    }


@pytest.fixture(scope="module")
def ov_calibration():
    rng = np.random.default_rng(1)
    return [{"images": rng.random((1, 3, 32, 32), dtype=np.float32)} for _ in range(16)]


def test_openvino_int8_keeps_the_named_layer_float_and_quantizes_the_rest(tmp_path, ov_calibration):
    source = three_conv_model(tmp_path / "convs.onnx")
    quantizer = get_quantizer("openvino")
    plain = quantizer.quantize(source, tmp_path / "plain.xml", options=QuantizeOptions(), calibration=ov_calibration)
    kept = quantizer.quantize(
        source, tmp_path / "kept.xml", options=QuantizeOptions(exclude=("conv2",)), calibration=ov_calibration
    )
    plain_convs, kept_convs = _convolutions(plain), _convolutions(kept)
    assert set(plain_convs) == set(kept_convs) == {"conv1", "conv2", "conv3"}

    # Without exclusions the middle conv is int8 on both inputs: the checks below can see quantization.
    assert _activation_quantized(plain_convs["conv2"]) and _int_weights(plain_convs["conv2"])
    # Kept float: no quantizer on its input, and its weights are the source's float numbers.
    conv2 = kept_convs["conv2"]
    assert not _activation_quantized(conv2) and not _int_weights(conv2)
    source_w2 = numpy_helper.to_array(next(t for t in onnx.load(str(source)).graph.initializer if t.name == "w2"))
    assert _weights(conv2) is not None and np.array_equal(_weights(conv2), source_w2)
    # The other layers are still int8.
    assert _int_weights(kept_convs["conv1"]) and _int_weights(kept_convs["conv3"])
    assert _activation_quantized(kept_convs["conv3"])


# ----------------------------------------------------------------------------- bench processes


@pytest.fixture(scope="module")
def int8_bench(tmp_path_factory, calib_images):
    """A short bench of the tiny model: fp32 on two runtimes and ORT int8, at 1 and 2 threads."""
    import tiny_models
    from edgevision.benchmark.api import BenchOptions, run_bench

    folder = tmp_path_factory.mktemp("tiny-int8-bench")
    source = tiny_models.build_torch(folder)["onnx"]
    timing = QUICK_TIMING
    options = BenchOptions(
        variants="ort-fp32,openvino-fp32,ort-int8",
        threads="1,2",
        data=str(calib_images),
        calib=str(calib_images),
        calib_count=12,
        timing=timing,
        measure_peak=False,
    )
    return run_bench(str(source), output=folder / "out", options=options)


def test_bench_times_each_variant_and_thread_count_in_its_own_process(int8_bench):
    data = json.loads(int8_bench.paths["json"].read_text())
    pids = {}
    for record in data["variants"]:
        assert record["error"] is None, record["error"]
        for threads, figures in record["threads"].items():
            pids[(record["variant"], threads)] = figures["pid"]
    assert len(pids) == 3 * 2
    assert all(isinstance(pid, int) and pid > 0 for pid in pids.values()), pids
    assert os.getpid() not in pids.values()  # never in the benchmarking process itself
    assert len(set(pids.values())) == len(pids), pids  # and never two variants in one worker


def test_bench_int8_variant_is_scored_and_the_recommendation_follows_the_rule(int8_bench):
    by_key = {r["variant"]: r for r in int8_bench.records}
    int8 = by_key["ort-int8"]
    assert int8["precision"] == "int8" and int8["runtime"] == "onnxruntime" and int8["error"] is None
    assert read_meta(Path(int8["file"])).precision == "int8"
    assert int8["agreement_metric"] == "mean output cosine vs fp32" and int8["agreement"] < 1.0
    assert 1.0 - int8["agreement"] <= int8_bench.settings["max_drop"]  # built through the accuracy budget
    expected = fastest_within_budget(int8_bench.records, max_drop=int8_bench.settings["max_drop"], threads=2)
    assert int8_bench.recommended == expected
