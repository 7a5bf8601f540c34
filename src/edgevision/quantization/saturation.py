"""7-bit weights where x86 int8 kernels without VNNI would overflow int16.

ONNX Runtime's uint8 x int8 convolution kernels for AVX2 (and AVX-512 without VNNI) use
``vpmaddubsw``: it multiplies adjacent pairs of uint8 activations and int8 weights and
adds each pair into a *saturating* int16. ``255 * 127 * 2`` does not fit, so a pair of
large activations meeting a pair of large weights of the same sign is clipped, silently,
and the error travels down the network. A static int8 QDQ model that agrees well when
run with ONNX Runtime's graph optimisations off (float arithmetic on the quantized
values) can then agree far worse with them on: on SSD-MobileNetV2 (AMD EPYC, AVX2)
agreement mAP was 0.91 simulated and 0.62 with the int8 kernels. VNNI (``vpdpbusd``) and
ARM kernels add in int32 and do not saturate, and there a narrowed layer only loses a bit
(on a small random-weight detector, 7-bit weights in its first conv took simulated
agreement from 0.96 to 0.90). So by default (``saturation="auto"``) layers are narrowed
only when this CPU saturates (``cpu_saturates``); elsewhere the layers that would overflow
on such a CPU are named in the notes. ``avoid`` narrows them on any CPU (a file made for
AVX2 machines elsewhere), ``ignore`` never.

ONNX Runtime's documented remedy is ``reduce_range`` (7-bit weights, ``[-64, 64]``:
``255 * 64 * 2`` fits int16) for the whole model, which costs every layer a bit. Here
only the convolutions that really overflow are narrowed: their uint8 inputs are taken
from a run of the QDQ model on a few calibration inputs, and a layer is narrowed when more
than ``MAX_OVERFLOW`` of its adjacent input-channel pair sums (over positions, output
channels and kernel taps) leave int16 (``saturating_convs``, ``overflow_fraction``). On
SSD-MobileNetV2 that was 21 of 55 int8 convs: the first conv, the 1x1 expansions that
read the residual streams (whose zero point sits near 128), three projections and two
class predictors. The int8 kernels then agreed about as well as the simulation: 0.83
with every layer int8 and 0.92 with the output head float, where it had been 0.60 and
0.62 (``reduce_range`` everywhere: 0.87 with the head float).

The pair order is that of ONNX Runtime's channels-last im2col (input channels fastest),
so pairs are ``(2j, 2j+1)`` at one tap. With an odd channel count pairs straddle taps;
there the bound is taken over every pair of same-signed weights of an output channel
with each input channel's largest activation. Depthwise and grouped convolutions run on
other kernels and are not checked (on SSD-MobileNetV2 the int8 run matched the simulation
without touching them).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgevision.quantization.base import Feeds

logger = logging.getLogger(__name__)

INT16_MAX = 32767
NARROW = 64  # int8 weights in [-64, 64]: ONNX Runtime's reduce_range
BIAS_LIMIT = 2**31 - 1 - 2**20  # int32 biases, with room for rounding
CHECK_INPUTS = 4  # calibration inputs the overflow is looked for on
# Layers where at most this share of pair sums overflows keep 8-bit weights: on SSD-MobileNetV2
# narrowing also the layers at 1e-7..1e-5 (projections, the extra feature layers) cost
# agreement (0.88 against 0.93 with the output head float) instead of gaining any.
MAX_OVERFLOW = 1e-5


def saturating_convs(model, feeds: Sequence[Feeds], *, max_fraction: float = MAX_OVERFLOW) -> list[str]:
    """Names of the Conv nodes of QDQ ``model`` (a ModelProto) where more than ``max_fraction``
    of the uint8 x int8 adjacent pair sums overflow int16 on ``feeds`` (see module docstring)."""
    convs = _quantized_convs(model)
    if not convs or not feeds:
        return []
    activations = _uint8_inputs(model, sorted({c.activation for c in convs}), feeds[:CHECK_INPUTS])
    found = []
    for conv in convs:
        if conv.activation in activations:
            parts = activations[conv.activation]
            shares = [overflow_fraction(part, conv.weights) for part in parts]
            share = float(np.average(shares, weights=[part.size for part in parts]))
            logger.debug("%s: %.2e of its int8 pair sums overflow int16", conv.name, share)
            if share > max_fraction:
                found.append(conv.name)
    return found


def narrow_weights(model, source, names: Sequence[str]) -> int:
    """Requantize the weights (and biases) of Conv ``names`` of QDQ ``model`` to ``[-64, 64]``
    from the float initializers of ``source`` (the float model it was quantized from, same
    node names). Returns how many layers were narrowed; ``model`` is changed in place."""
    from onnx import numpy_helper

    float_nodes = {n.name: n for n in source.graph.node}
    float_init = {t.name: t for t in source.graph.initializer}
    init = {t.name: t for t in model.graph.initializer}
    producer = {out: n for n in model.graph.node for out in n.output}
    done = 0
    for node in model.graph.node:
        if node.name not in set(names) or node.name not in float_nodes:
            continue
        original = float_nodes[node.name]
        weight_dq = producer.get(node.input[1])
        if original.input[1] not in float_init or weight_dq is None or weight_dq.input[1] not in init:
            continue
        weights = numpy_helper.to_array(float_init[original.input[1]]).astype(np.float64)
        old_scale = numpy_helper.to_array(init[weight_dq.input[1]]).astype(np.float64)
        absmax = np.abs(weights.reshape(weights.shape[0], -1)).max(axis=1)
        scale = np.where(absmax > 0, absmax / NARROW, np.broadcast_to(old_scale, absmax.shape))
        bias_dq = producer.get(node.input[2]) if len(node.input) > 2 else None
        has_bias = bias_dq is not None and len(original.input) > 2 and original.input[2] in float_init
        if has_bias:
            bias = numpy_helper.to_array(float_init[original.input[2]]).astype(np.float64)
            input_scale = numpy_helper.to_array(init[producer[node.input[0]].input[1]]).astype(np.float32)
            # as ONNX Runtime's quantizer does: widen the weight scale where the bias would not
            # fit int32 at input scale x weight scale (an input whose range is nearly zero)
            scale = np.maximum(scale, np.abs(bias) / (float(input_scale) * BIAS_LIMIT))
        shape = (-1,) + (1,) * (weights.ndim - 1)
        quantized = np.clip(np.round(weights / scale.reshape(shape)), -NARROW, NARROW).astype(np.int8)
        if old_scale.ndim == 0:  # per-tensor weights stay per-tensor
            scale = np.full_like(scale, scale.max())
            quantized = np.clip(np.round(weights / scale[0]), -NARROW, NARROW).astype(np.int8)
        new_scale = scale.astype(np.float32) if old_scale.ndim else np.float32(scale[0])
        _rewire(model, weight_dq, 0, numpy_helper.from_array(quantized, f"{node.name}_w7"))
        _rewire(model, weight_dq, 1, numpy_helper.from_array(np.asarray(new_scale), f"{node.name}_w7_scale"))
        if has_bias:
            # ONNX Runtime fuses the QDQ group into one int8 conv only when the bias scale is
            # exactly input scale x weight scale (in float32)
            bias_scale = (input_scale * np.asarray(new_scale, np.float32)).astype(np.float32)
            bias_q = np.round(bias / bias_scale.astype(np.float64)).clip(-(2**31), 2**31 - 1).astype(np.int32)
            _rewire(model, bias_dq, 0, numpy_helper.from_array(bias_q, f"{node.name}_b7"))
            _rewire(model, bias_dq, 1, numpy_helper.from_array(bias_scale.astype(np.float32), f"{node.name}_b7_scale"))
        done += 1
    _drop_unused(model)
    return done


# ----------------------------------------------------------------------------- finding them


class _Conv:
    def __init__(self, name: str, activation: str, weights: np.ndarray) -> None:
        self.name, self.activation, self.weights = name, activation, weights


def _quantized_convs(model) -> list[_Conv]:
    """Conv nodes (group 1, 4-D) reading a uint8-quantized input and int8 weight initializer."""
    from onnx import TensorProto, numpy_helper

    init = {t.name: t for t in model.graph.initializer}
    producer = {out: n for n in model.graph.node for out in n.output}
    found = []
    for node in model.graph.node:
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if node.op_type != "Conv" or group != 1:
            continue
        x_dq, w_dq = producer.get(node.input[0]), producer.get(node.input[1])
        if x_dq is None or w_dq is None or "DequantizeLinear" not in (x_dq.op_type, w_dq.op_type):
            continue
        if x_dq.op_type != "DequantizeLinear" or w_dq.op_type != "DequantizeLinear":
            continue
        weight = init.get(w_dq.input[0])
        if weight is None or weight.data_type != TensorProto.INT8 or len(weight.dims) != 4:
            continue
        zero_point = init.get(x_dq.input[2]) if len(x_dq.input) > 2 else None
        if zero_point is None or zero_point.data_type != TensorProto.UINT8:
            continue
        found.append(_Conv(node.name, x_dq.input[0], numpy_helper.to_array(weight).astype(np.int32)))
    return found


def _uint8_inputs(model, tensors: list[str], feeds: Sequence[Feeds]) -> dict[str, list[np.ndarray]]:
    """The uint8 tensors ``tensors`` of QDQ ``model`` over ``feeds`` (graph optimisations off),
    stacked per shape: a model whose input size follows the frame (MoveNet MultiPose) sees several."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    for name in tensors:
        if name not in known:
            probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.UINT8, None))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    inputs = {i.name for i in session.get_inputs()}
    runs = [session.run(tensors, {k: v for k, v in f.items() if k in inputs}) for f in feeds]
    stacked = {}
    for i, name in enumerate(tensors):
        if runs[0][i].ndim != 4:
            continue
        by_shape: dict[tuple, list[np.ndarray]] = {}
        for run in runs:
            by_shape.setdefault(run[i].shape[1:], []).append(run[i])
        stacked[name] = [np.concatenate(same) for same in by_shape.values()]
    return stacked


def overflow_fraction(activations: np.ndarray, weights: np.ndarray) -> float:
    """The share of adjacent-pair sums that leave int16 when ``activations`` (N, C, H, W uint8)
    meet ``weights`` (O, C, kh, kw int8): over every position, output channel, tap and pair.

    Exact for the positions seen (padding aside), from each channel pair's 256 x 256 histogram
    of value pairs: for weights ``w1, w2`` of one sign the sums ``w1 * a1 + w2 * a2`` beyond
    int16 are, for each ``a1``, the ``a2`` above one threshold. With an odd channel count
    (pairs straddle taps) the bound of ``_bound_overflows`` answers 1.0 or 0.0.
    """
    channels = weights.shape[1]
    if activations.shape[1] != channels:
        return 0.0
    flat = np.moveaxis(activations, 1, 0).reshape(channels, -1).astype(np.int64)
    if channels % 2:
        return 1.0 if _bound_overflows(flat.max(axis=1), weights) else 0.0
    taps = weights.reshape(weights.shape[0], channels, -1).astype(np.int64)  # O, C, taps
    first = np.arange(256)
    over = 0
    peaks = flat.max(axis=1)
    for j in range(0, channels, 2):
        candidates = []
        for sign, limit in ((1, INT16_MAX), (-1, INT16_MAX + 1)):
            w1, w2 = (sign * taps[:, j, :]).ravel(), (sign * taps[:, j + 1, :]).ravel()
            # opposite signs never leave int16 (255 * 127 fits), nor do weights whose sum with
            # the two channels' largest values stays inside
            both = (w1 > 0) & (w2 > 0) & (w1 * peaks[j] + w2 * peaks[j + 1] > limit)
            if both.any():
                candidates.append((w1[both][:, None], w2[both][:, None], limit))
        if not candidates:
            continue
        counts = np.bincount(flat[j] * 256 + flat[j + 1], minlength=65536).reshape(256, 256)
        # at_least[a1, t]: how many positions had this a1 and a2 >= t (t = 256: none)
        at_least = np.concatenate([np.cumsum(counts[:, ::-1], axis=1)[:, ::-1], np.zeros((256, 1), np.int64)], axis=1)
        for a, b, limit in candidates:
            threshold = np.clip((limit - a * first[None, :]) // b + 1, 0, 256)  # smallest a2 beyond the limit
            over += int(at_least[first[None, :], threshold].sum())
    total = flat.shape[1] * weights.shape[0] * taps.shape[2] * (channels // 2)
    return over / max(total, 1)


def _bound_overflows(peaks: np.ndarray, weights: np.ndarray) -> bool:
    """Pairs straddle kernel taps (odd channel count): bound each output channel by its two
    largest same-signed weight-times-peak products."""
    products = weights.astype(np.int64) * peaks[None, :, None, None]
    flat = products.reshape(products.shape[0], -1)
    for sign in (1, -1):
        top = np.sort(np.clip(sign * flat, 0, None), axis=1)[:, -2:]
        if (top.sum(axis=1) > INT16_MAX).any():
            return True
    return False


# ----------------------------------------------------------------------------- rewriting


def _rewire(model, node, index: int, tensor) -> None:
    """Point input ``index`` of ``node`` at the new initializer ``tensor``."""
    model.graph.initializer.append(tensor)
    node.input[index] = tensor.name


def _drop_unused(model) -> None:
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


def narrow_saturating(path: Path, source: Path, feeds: Sequence[Feeds], *, narrow: bool = True) -> list[str]:
    """The layers of QDQ file ``path`` that overflow int16 on ``feeds``; narrowed in place
    when ``narrow``."""
    import onnx

    model = onnx.load(str(path))
    names = saturating_convs(model, feeds)
    if names and narrow:
        narrow_weights(model, onnx.load(str(source)), names)
        onnx.save(model, str(path))
        logger.info("7-bit weights in %d layers whose int8 pair sums overflow int16", len(names))
    return names


def cpu_saturates() -> bool:
    """Whether ONNX Runtime's int8 kernels on this CPU add pairs in int16: x86-64 without VNNI
    (``avx512_vnni`` / ``avx_vnni`` in /proc/cpuinfo). Other x86 systems, whose flags are not
    read here, count as saturating; ARM does not."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return True
    return not any(flag in flags.split() for flag in ("avx512_vnni", "avx_vnni"))
