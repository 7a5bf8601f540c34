"""int8 convolution weights that cannot overflow x86's 16-bit pair sums (CPUs without VNNI).

>>> w = np.array([[100.0, 100.0, 1.0, -1.0]])  # one output channel, four inputs
>>> pair_safe_scales(w) * 127 >= 200.0 - 1e-9  # the pair (100, 100) sets the step, not 100 alone
array([ True])

x86 CPUs without VNNI (AVX2, AVX-512 before Cascade Lake, AMD before Zen 4) multiply uint8
activations by int8 weights with ``vpmaddubsw``, which adds each two neighbouring products
into a *saturating* int16: ``a0 * w0 + a1 * w1`` with ``a`` up to 255 and ``|w|`` up to 127
reaches 64770, twice what int16 holds, and is clamped to 32767. ONNX Runtime's int8
convolutions and OpenVINO's (oneDNN) both do this; on an AMD EPYC (Zen 3) a 1x1 convolution
of an all-255 input with weights 127 on channels 0 and 1 gave half the exact sum, on
channels 0 and 2 the exact one. Post-ReLU6 activations hit 255 often, so on MobileNet-like
models the clamping is not rare: BlazePose's landmark model fell from 0.87 agreement with
float (the same QDQ model computed in float) to 0.52 with ONNX Runtime's int8 kernels.

The usual remedy, 7-bit weights (ONNX Runtime's ``reduce_range``, NNCF's overflow fix),
halves every weight's precision: 0.57 on the same model. Here each output channel's scale is
instead chosen so that any two neighbouring int8 weights sum to at most ``PAIR_LIMIT`` in
magnitude (255 * 128 = 32640 fits in int16), which costs precision only where two large
weights sit side by side. Neighbours are taken along the input channels (a 1x1 convolution,
or an NHWC im2col) and along the flattened ``(C, kh, kw)`` weight (an NCHW im2col); both
bounds hold. With these weights the int8 kernels give exactly what the QDQ model computes
in float, on any CPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PAIR_LIMIT = 127  # |q0| + |q1| <= 127 before rounding, <= 128 after: 255 * 128 < 32767
INT8_MAX = 127


def pair_safe_scales(weights: np.ndarray, *, per_channel: bool = True) -> np.ndarray:
    """Per output channel (or one, ``per_channel`` False) scale of symmetric int8 ``weights``
    (``(K, C, ...)``) such that neighbouring int8 weights cannot overflow a 16-bit pair sum."""
    w = np.abs(np.asarray(weights, dtype=np.float64))
    k = w.shape[0]
    bounds = [w.reshape(k, -1).max(axis=1) / INT8_MAX]
    for flat in (w.reshape(k, -1), np.moveaxis(w, 1, -1).reshape(k, -1)):  # (C, kh, kw) and (kh, kw, C) orders
        padded = np.pad(flat, ((0, 0), (0, flat.shape[1] % 2)))
        bounds.append((padded[:, 0::2] + padded[:, 1::2]).max(axis=1) / PAIR_LIMIT)
    scales = np.maximum.reduce(bounds)
    if not per_channel:
        scales = np.full(k, scales.max())
    return np.where(scales > 0, scales, 1.0)


def quantize_pair_safe(weights: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """``weights`` as int8 at ``scales`` (one per output channel)."""
    shaped = np.asarray(scales, dtype=np.float64).reshape(-1, *([1] * (weights.ndim - 1)))
    return np.clip(np.round(np.asarray(weights, dtype=np.float64) / shaped), -INT8_MAX, INT8_MAX).astype(np.int8)


def max_pair_sum(q: np.ndarray) -> int:
    """The largest ``|q0| + |q1|`` of neighbouring int8 weights in either order (for checks)."""
    a = np.abs(np.asarray(q, dtype=np.int64))
    k = a.shape[0]
    worst = 0
    for flat in (a.reshape(k, -1), np.moveaxis(a, 1, -1).reshape(k, -1)):
        padded = np.pad(flat, ((0, 0), (0, flat.shape[1] % 2)))
        worst = max(worst, int((padded[:, 0::2] + padded[:, 1::2]).max()))
    return worst


def pair_safe_qdq(quantized: Path, float_model: Path) -> int:
    """Rewrite the int8 weights of ``quantized``'s dense convolutions (a QDQ ONNX file) pair-safe,
    from the float weights of the same-named convolutions of ``float_model``; returns how many.

    Depthwise convolutions are left alone (their kernels add in 32 bits); so are weights with a
    zero point, or any the float model does not have.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(quantized))
    source = onnx.load(str(float_model))
    floats = {t.name: t for t in source.graph.initializer}
    source_weights = {n.name: n.input[1] for n in source.graph.node if n.op_type == "Conv" and len(n.input) > 1}
    inits = {t.name: t for t in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}
    changed = 0
    for node in model.graph.node:
        if node.op_type != "Conv" or _group(node) != 1 or node.name not in source_weights:
            continue
        dq = producer.get(node.input[1])
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits or dq.input[1] not in inits:
            continue
        q = numpy_helper.to_array(inits[dq.input[0]])
        scale = numpy_helper.to_array(inits[dq.input[1]])
        zero = numpy_helper.to_array(inits[dq.input[2]]) if len(dq.input) > 2 and dq.input[2] in inits else None
        original = floats.get(source_weights[node.name])
        if q.dtype != np.int8 or (zero is not None and np.any(zero)) or original is None:
            continue
        weights = numpy_helper.to_array(original)
        scales = pair_safe_scales(weights, per_channel=scale.ndim == 1)
        inits[dq.input[0]].CopyFrom(numpy_helper.from_array(quantize_pair_safe(weights, scales), dq.input[0]))
        new_scale = scales.astype(np.float32) if scale.ndim == 1 else np.array(scales[0], dtype=np.float32)
        inits[dq.input[1]].CopyFrom(numpy_helper.from_array(new_scale, dq.input[1]))
        changed += 1
    onnx.save(model, str(quantized))
    return changed


def _group(node) -> int:
    return next((a.i for a in node.attribute if a.name == "group"), 1)
