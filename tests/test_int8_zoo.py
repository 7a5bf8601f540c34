"""int8 of real zoo models: the sensitivity ranking sees the body layers, BlazePose's landmark
model quantizes as one stage, and the small PyTorch models keep their raw outputs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import edgevision
from edgevision.backends import create_backend
from edgevision.quantization import QuantizeOptions, get_quantizer
from edgevision.quantization.api import resolve_source
from edgevision.quantization.calibration import load_calibration
from edgevision.quantization.sensitivity import WEIGHTED_OPS, output_head, rank_layers
from edgevision.zoo.assemble import SingleStagePredictor, load_predictor
from edgevision.zoo.info import onnx_summary


def test_landmark_stage_matches_the_two_stage_predictor(samples_cache):
    """The one-stage view of BlazePose (detector inside pre-processing) finds the same person."""
    image = cv2.imread(str(samples_cache["person.jpg"]))
    two_stage = load_predictor("blazepose-lite")
    source = resolve_source("blazepose-lite")
    one_stage = SingleStagePredictor(create_backend("onnxruntime", source.path), source.processor)
    expected, found = two_stage(image), one_stage(image)
    assert len(expected.scores) == len(found.scores) == 1
    np.testing.assert_allclose(found.keypoints, expected.keypoints, atol=1e-3)
    np.testing.assert_allclose(found.scores, expected.scores, atol=1e-6)


def test_landmark_stage_without_a_person_decodes_to_nobody():
    source = resolve_source("blazepose-lite")
    tensor, crop = source.processor.preprocess(np.zeros((240, 320, 3), np.uint8))
    assert tensor.shape == (1, 256, 256, 3) and crop.roi is None
    outputs = create_backend("onnxruntime", source.path).run({onnx_summary(source.path)[1][0].name: tensor})
    assert len(source.processor.decode(outputs, crop).scores) == 0


@pytest.mark.slow
def test_ssd_ranking_sees_the_body_layers(samples_cache, tmp_path):
    """ONNX Runtime drops the Relu6 after each conv; the ranking must still reach the backbone."""
    import onnx

    source = resolve_source("ssd-mobilenetv2-oidv4")
    calib = load_calibration(
        str(samples_cache["vtest.avi"]),
        source.processor,
        input_name=onnx_summary(source.path)[1][0].name,
        count=16,
        holdout=0,
    )
    quantizer = get_quantizer("ort")
    quantized = quantizer.quantize(
        source.path, tmp_path / "int8.onnx", options=QuantizeOptions(precision="int8"), calibration=calib.feeds
    )
    prepared = quantizer.prepare(source.path)
    ranking = rank_layers(prepared, quantized, calib.feeds[:4])
    head = output_head(onnx.load(str(prepared), load_external_data=False).graph)
    body = [r for r in ranking if r.op_type in WEIGHTED_OPS and r.name not in head]
    assert len(body) >= 20
    assert "project" in body[0].name  # MobileNetV2's linear bottlenecks add the most noise


@pytest.mark.slow
def test_ssd_int8_kernels_agree_with_the_simulated_int8(samples_cache, tmp_path):
    """The int8 file's outputs under ONNX Runtime's int8 kernels are those of its float
    simulation (graph optimisations off). On an AVX2 CPU without VNNI the kernels' int16 pair
    sums saturated: box encodings 14.7 dB and class logits 25.4 dB SQNR against the simulation;
    with 7-bit weights in the layers that overflow, 24.4 and 36.5 dB."""
    import onnxruntime as ort

    source = resolve_source("ssd-mobilenetv2-oidv4")
    calib = load_calibration(
        str(samples_cache["vtest.avi"]),
        source.processor,
        input_name=onnx_summary(source.path)[1][0].name,
        count=24,
        holdout=8,
    )
    quantized = get_quantizer("ort").quantize(
        source.path, tmp_path / "int8.onnx", options=QuantizeOptions(precision="int8"), calibration=calib.feeds
    )

    def outputs(optimise: bool) -> list[np.ndarray]:
        options = ort.SessionOptions()
        if not optimise:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(str(quantized), options, providers=["CPUExecutionProvider"])
        runs = [session.run(None, feeds) for feeds in calib.holdout_feeds]
        return [np.concatenate([run[k].ravel() for run in runs]) for k in range(len(runs[0]))]

    simulated, kernels = outputs(False), outputs(True)
    sqnr = [10 * np.log10(np.sum(s**2) / np.sum((s - k) ** 2)) for s, k in zip(simulated, kernels)]
    assert min(sqnr) >= 20, sqnr


@pytest.mark.slow
def test_blazepose_quantizes_and_is_judged_on_poses(samples_cache, tmp_path):
    result = edgevision.quantize(
        "blazepose-lite",
        backend="ort",
        precision="int8",
        calib=str(samples_cache["vtest.avi"]),
        calib_count=16,
        output=tmp_path / "bp.onnx",
    )
    assert result.metric.startswith("pose OKS AP")
    assert result.agreement is not None and 0.0 < result.agreement <= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["ort", "openvino"])
def test_yolox_tiny_int8_keeps_raw_outputs(samples_cache, tmp_path, backend):
    suffix = ".xml" if backend == "openvino" else ".onnx"
    result = edgevision.quantize(
        "yolox-tiny",
        backend=backend,
        precision="auto",
        calib=str(samples_cache["vtest.avi"]),
        calib_count=16,
        random_weights=True,
        output=tmp_path / f"model{suffix}",
    )
    assert result.agreement >= 0.98
    assert result.size_ratio < 0.5
