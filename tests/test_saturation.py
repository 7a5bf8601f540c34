"""int8 weights that x86 CPUs without VNNI cannot clamp: neighbouring int8 weights of a dense
convolution sum to at most 128, so uint8 x int8 pair sums fit the int16 of ``vpmaddubsw``."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgevision.quantization import QuantizeOptions, get_quantizer
from edgevision.quantization.saturation import PAIR_LIMIT, max_pair_sum, pair_safe_scales, quantize_pair_safe


def test_pair_safe_weights_keep_every_pair_in_int16():
    rng = np.random.default_rng(0)
    for shape in [(16, 32, 1, 1), (8, 3, 3, 3), (4, 5, 2, 2)]:
        weights = rng.standard_normal(shape) * rng.uniform(0.1, 50, (shape[0], 1, 1, 1))
        for per_channel in (True, False):
            q = quantize_pair_safe(weights, pair_safe_scales(weights, per_channel=per_channel))
            assert max_pair_sum(q) <= PAIR_LIMIT + 1
            assert 255 * max_pair_sum(q) <= 32767


def test_pair_safe_weights_lose_little_where_no_pair_is_large():
    """A lone large weight keeps the full 8-bit step: only large neighbours cost precision."""
    weights = np.zeros((1, 8, 1, 1))
    weights[0, 0], weights[0, 3] = 127.0, -127.0  # never neighbours in either order
    np.testing.assert_allclose(pair_safe_scales(weights), [1.0])


def saturating_conv(path) -> None:
    """A 1x1 convolution whose channel pairs (0, 1) and (2, 3) both carry large same-sign weights."""
    weights = np.tile(np.array([1.0, 1.0, -1.0, -1.0], np.float32), (4, 1))[:, :, None, None]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [numpy_helper.from_array(weights, "w")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def test_ort_int8_weights_cannot_overflow_and_kernels_compute_the_file(tmp_path):
    """Without the re-scaling the per-channel scale puts both weights of a pair at 127; with it
    ONNX Runtime's int8 kernels give what the QDQ file computes in float, on any x86 CPU."""
    source, output = tmp_path / "conv.onnx", tmp_path / "int8.onnx"
    saturating_conv(source)
    feeds = [{"x": np.full((1, 4, 8, 8), v, np.float32)} for v in (0.0, 0.5, 1.0)]
    get_quantizer("ort").quantize(source, output, options=QuantizeOptions(precision="int8"), calibration=feeds)
    model = onnx.load(str(output))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    weights = [v for v in inits.values() if v.dtype == np.int8 and v.ndim == 4]
    assert len(weights) == 1 and max_pair_sum(weights[0]) <= PAIR_LIMIT + 1

    plain = ort.SessionOptions()
    plain.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    exact = ort.InferenceSession(str(output), plain, providers=["CPUExecutionProvider"])
    kernels = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    x = {"x": np.ones((1, 4, 8, 8), np.float32)}
    np.testing.assert_allclose(kernels.run(None, x)[0], exact.run(None, x)[0], atol=0.05)
