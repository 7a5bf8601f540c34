"""7-bit weights where uint8 x int8 pair sums would overflow int16 (x86 kernels without VNNI)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgevision.errors import EdgevisionError
from edgevision.quantization import QuantizeOptions, get_quantizer
from edgevision.quantization.saturation import saturating_convs


def _two_convs(folder, shape=(1, 2, 8, 8)) -> str:
    """x (1, 2, 8, 8) in [0, 1] -> ``sum`` (weights 1, 1: both large, same sign) and
    ``diff`` (weights 1, -1: opposite signs never add up)."""
    same = numpy_helper.from_array(np.ones((1, 2, 1, 1), np.float32), "w_sum")
    opposite = numpy_helper.from_array(np.array([1.0, -1.0], np.float32).reshape(1, 2, 1, 1), "w_diff")
    bias = numpy_helper.from_array(np.array([0.1], np.float32), "b")
    nodes = [
        helper.make_node("Conv", ["x", "w_sum", "b"], ["sum"], name="sum_conv"),
        helper.make_node("Conv", ["x", "w_diff", "b"], ["diff"], name="diff_conv"),
    ]
    io = lambda name, shape: helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)  # noqa: E731
    graph = helper.make_graph(
        nodes,
        "g",
        [io("x", list(shape))],
        [io("sum", [1, 1, *shape[2:]]), io("diff", [1, 1, *shape[2:]])],
        [same, opposite, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = folder / "two_convs.onnx"
    onnx.save(model, str(path))
    return str(path)


@pytest.fixture()
def feeds():
    rng = np.random.default_rng(0)
    bright = np.ones((1, 2, 8, 8), np.float32)  # both channels at the top of the range at once
    return [{"x": bright}] + [{"x": rng.uniform(0, 1, (1, 2, 8, 8)).astype(np.float32)} for _ in range(7)]


def _weights(path, conv: str) -> np.ndarray:
    model = onnx.load(str(path))
    producer = {out: n for n in model.graph.node for out in n.output}
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    node = next(n for n in model.graph.node if n.name == conv)
    return init[producer[node.input[1]].input[0]]


def test_only_the_conv_whose_pair_sums_overflow_gets_7_bit_weights(tmp_path, feeds):
    source = _two_convs(tmp_path)
    quantizer = get_quantizer("ort")
    options = QuantizeOptions(extra={"saturation": "avoid"})  # on any CPU
    out = quantizer.quantize(source, tmp_path / "int8.onnx", options=options, calibration=feeds)
    assert quantizer.narrowed == ["sum_conv"]
    assert np.abs(_weights(out, "sum_conv")).max() == 64  # [-64, 64]: 255 * 64 * 2 fits int16
    assert np.abs(_weights(out, "diff_conv")).max() == 127
    assert any("7-bit weights" in note and "sum_conv" in note for note in quantizer.notes)
    assert saturating_convs(onnx.load(str(out)), feeds) == []  # nothing left to overflow


def test_the_narrowed_model_agrees_with_float_under_the_int8_kernels(tmp_path, feeds):
    """255 * 127 + 255 * 127 saturates to 32767 in AVX2's vpmaddubsw: ``sum`` came out near
    1.1 instead of 2.1 on a machine without VNNI. With 7-bit weights it holds everywhere."""
    import onnxruntime as ort

    source = _two_convs(tmp_path)
    out = get_quantizer("ort").quantize(source, tmp_path / "int8.onnx", options=QuantizeOptions(), calibration=feeds)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])  # full optimisation: int8 kernels
    got = session.run(["sum"], feeds[0])[0]
    assert np.allclose(got, 2.1, atol=0.05)


@pytest.mark.parametrize("saturates", [True, False])
def test_by_default_layers_are_narrowed_only_on_a_cpu_that_saturates(tmp_path, feeds, monkeypatch, saturates):
    monkeypatch.setattr("edgevision.quantization.ort.cpu_saturates", lambda: saturates)
    quantizer = get_quantizer("ort")
    out = quantizer.quantize(_two_convs(tmp_path), tmp_path / "int8.onnx", options=QuantizeOptions(), calibration=feeds)
    assert np.abs(_weights(out, "sum_conv")).max() == (64 if saturates else 127)
    assert (quantizer.narrowed, quantizer.would_saturate) == ((["sum_conv"], []) if saturates else ([], ["sum_conv"]))
    if not saturates:
        assert any("8-bit weights kept" in note and "1 layers overflow" in note for note in quantizer.notes)


def test_saturation_can_be_ignored_and_a_bad_value_is_refused(tmp_path, feeds):
    source = _two_convs(tmp_path)
    quantizer = get_quantizer("ort")
    options = QuantizeOptions(extra={"saturation": "ignore"})
    out = quantizer.quantize(source, tmp_path / "plain.onnx", options=options, calibration=feeds)
    assert quantizer.narrowed == [] and np.abs(_weights(out, "sum_conv")).max() == 127
    with pytest.raises(EdgevisionError, match="saturation is one of"):
        quantizer.quantize(
            source, tmp_path / "x.onnx", options=QuantizeOptions(extra={"saturation": "x"}), calibration=feeds
        )


def test_overflow_fraction_counts_the_pair_sums_that_leave_int16():
    """Against brute force: every position, output channel, tap and adjacent channel pair."""
    from edgevision.quantization.saturation import overflow_fraction

    rng = np.random.default_rng(1)
    activations = rng.integers(100, 256, (2, 4, 5, 5)).astype(np.uint8)
    weights = rng.integers(-127, 128, (3, 4, 3, 3)).astype(np.int32)
    a = activations.astype(np.int64).transpose(1, 0, 2, 3).reshape(4, -1)  # C, positions
    sums = [
        a[j][:, None] * weights[o, j].ravel()[None, :] + a[j + 1][:, None] * weights[o, j + 1].ravel()[None, :]
        for o in range(3)
        for j in (0, 2)
    ]
    expected = np.mean(np.concatenate([((s > 32767) | (s < -32768)).ravel() for s in sums]))
    assert expected > 0
    assert overflow_fraction(activations, weights) == pytest.approx(expected)
    assert overflow_fraction(activations // 2, weights) == 0.0  # values up to 127: 127 * 127 * 2 fits


def test_narrowing_keeps_a_bias_that_dwarfs_a_nearly_dead_input(tmp_path):
    """An input whose range is ~1e-8 (a dead branch of a randomly initialised YOLOX head) puts a
    bias of 0.1 beyond int32 at input scale x weight scale. ONNX Runtime widens that channel's
    weight scale; narrowing must too, or the bias is clipped and the output is wrong."""
    import onnxruntime as ort

    weights = numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), "w")
    bias = numpy_helper.from_array(np.array([0.1, 0.0], np.float32), "b")
    io = lambda name, shape: helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)  # noqa: E731
    conv = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv")
    graph = helper.make_graph([conv], "g", [io("x", [1, 2, 8, 8])], [io("y", [1, 2, 8, 8])], [weights, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "conv.onnx"))
    rng = np.random.default_rng(1)
    feeds = [{"x": np.full((1, 2, 8, 8), 1e-8, np.float32)}]
    feeds += [{"x": rng.uniform(0, 1e-8, (1, 2, 8, 8)).astype(np.float32)} for _ in range(7)]
    quantizer = get_quantizer("ort")
    options = QuantizeOptions(extra={"saturation": "avoid"})
    out = quantizer.quantize(tmp_path / "conv.onnx", tmp_path / "int8.onnx", options=options, calibration=feeds)
    assert quantizer.narrowed == ["conv"]  # the second channel's 127 x 255 pairs overflow
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    got = ort.InferenceSession(str(out), options, providers=["CPUExecutionProvider"]).run(["y"], feeds[0])[0]
    assert np.allclose(got[0, 0], 0.1, atol=1e-3)  # clipped, it came out 0.0012


def test_inputs_whose_size_follows_the_frame_are_checked_per_shape(tmp_path, feeds):
    # MoveNet MultiPose takes the frame's size: calibration views of 88 and 64 pixels once made
    # the overflow check fail on stacking them.
    source = _two_convs(tmp_path, shape=(1, 2, "h", "w"))
    rng = np.random.default_rng(1)
    sizes = [(8, 8), (8, 12), (16, 4)]
    mixed = [feeds[0]] + [{"x": rng.uniform(0, 1, (1, 2, *size)).astype(np.float32)} for size in sizes * 2]
    quantizer = get_quantizer("ort")
    options = QuantizeOptions(extra={"saturation": "avoid"})
    out = quantizer.quantize(source, tmp_path / "int8.onnx", options=options, calibration=mixed)
    assert quantizer.narrowed == ["sum_conv"]
    assert saturating_convs(onnx.load(str(out)), mixed) == []
