"""Which layers a quantized model loses its accuracy in: per-layer noise added, from one run.

Both the float model and its quantized (QDQ) twin are run on a few inputs with every
intermediate tensor exposed (ONNX Runtime's ``qdq_loss_debug`` does the exposing and the
collecting). A QDQ graph keeps the float tensor names, so every tensor of the quantized
model can be compared with the same tensor of the float model: the value compared is the
one after its QuantizeLinear/DequantizeLinear pair (what the next layers read). ONNX
Runtime drops a Relu or Clip whose range the quantization already enforces and gives its
output name to the layer before it, whose unclipped values then only become the
activation's after that pair; comparing before it would blame the next layer for noise
that is not there.

A tensor's relative noise is ``n = |float - quant|^2 / |float|^2`` (SQNR ``-10 log10 n``).
The noise a layer *adds* is its output's ``n`` minus the largest ``n`` among its inputs:
noise that was already there is not the layer's fault. Layers are ranked by it. This costs
two inference passes, not one quantization per layer.

The output head (every node between the last weighted layer and a graph output, that
layer included) is ranked first: its noise lands directly on scores and box offsets, and
a task metric such as mAP reacts to a reordering of scores far more than SQNR shows.

>>> ranked = rank_layers(Path("fp32.onnx"), Path("int8.onnx"), feeds[:8])  # doctest: +SKIP
>>> ranked[0].name, round(ranked[0].sqnr_db, 1)                            # doctest: +SKIP
('Sigmoid_154', 19.9)
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgevision.quantization.base import Feeds

logger = logging.getLogger(__name__)

# Tensors compared with fewer decibels of noise than this count as exact.
MAX_SQNR_DB = 80.0


@dataclass(frozen=True)
class LayerSensitivity:
    """How much quantization noise one layer adds, and what keeping it in float costs."""

    name: str
    op_type: str
    sqnr_db: float  # SQNR of the layer's output, quantized model vs float model
    added_noise: float  # relative noise power the layer adds (see module docstring)
    weight_bytes: int  # float32 bytes of its constant inputs (what float costs in size)


def rank_layers(
    float_model: Path, quant_model: Path, feeds: Sequence[Feeds], *, skip: Sequence[str] = ()
) -> list[LayerSensitivity]:
    """Layers of ``float_model`` ranked by the noise they add in ``quant_model``, worst first.

    Only layers whose output differs between the two models are returned; ``skip`` names
    layers to leave out (already kept in float).
    """
    import onnx

    noise = tensor_noise(float_model, quant_model, feeds)
    graph = onnx.load(str(float_model), load_external_data=False).graph
    weights = {t.name: int(np.prod(t.dims)) * 4 for t in graph.initializer}
    seen = observed_outputs(graph, noise)
    ranked = [_layer(node, seen, noise, weights) for node in graph.node if node.name not in set(skip)]
    head = output_head(graph)
    # Outside the head only weighted layers are candidates: keeping an activation such as a
    # LeakyRelu in float does not remove its input's quantization, it adds a second one.
    ranked = [
        r for r in ranked if r is not None and r.added_noise > 0 and (r.name in head or r.op_type in WEIGHTED_OPS)
    ]
    return sorted(ranked, key=lambda r: (r.name not in head, -r.added_noise))


WEIGHTED_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm"}
# Ops that directly follow a weighted layer and stay float with it, so that the tensor
# between the two is never quantized (a float Conv feeding an int8 LeakyRelu still has
# its output quantized at the LeakyRelu's input).
FOLLOWER_OPS = {"Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Swish", "Tanh", "Split", "Softmax"}


def exclusion_unit(graph, name: str) -> list[str]:
    """``name`` and the activation (or split) nodes right after it: what to keep float together.

    A node follows when it is one of ``FOLLOWER_OPS`` and its only graph input is an
    output of the unit; followers of followers are included (Conv -> Split -> Sigmoid).
    """
    consumers: dict[str, list] = {}
    for node in graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    by_name = {n.name: n for n in graph.node}
    unit, stack = [name], [by_name[name]] if name in by_name else []
    while stack:
        for out in stack.pop().output:
            for node in consumers.get(out, []):
                if node.op_type in FOLLOWER_OPS and node.name not in unit:
                    unit.append(node.name)
                    stack.append(node)
    return unit


def head_units(graph) -> list[str]:
    """Every node of the output head (``output_head``) in graph order, weighted layers with
    their followers (see ``exclusion_unit``).

    Decoding steps inside the graph (MoveNet's distance weighting, ArgMax and GatherND)
    belong to the head: quantized, their ArgMax picks other cells.
    """
    head = output_head(graph)
    ordered = [n.name for n in graph.node if n.name in head]
    weighted = [n.name for n in graph.node if n.name in head and n.op_type in WEIGHTED_OPS]
    return unique(ordered + [name for layer in weighted for name in exclusion_unit(graph, layer)])


def unique(names) -> list[str]:
    """``names`` without repeats, first occurrence kept."""
    return list(dict.fromkeys(names))


def output_head(graph) -> set[str]:
    """Names of the nodes from the last weighted layers (included) to the graph outputs."""
    producer = {out: node for node in graph.node for out in node.output}
    stack = [producer[o.name] for o in graph.output if o.name in producer]
    head: set[str] = set()
    while stack:
        node = stack.pop()
        if node.name in head:
            continue
        head.add(node.name)
        if node.op_type not in WEIGHTED_OPS:
            stack.extend(producer[i] for i in node.input if i in producer)
    return head


def observed_outputs(graph, noise: dict[str, float]) -> dict[str, str]:
    """Node name -> the tensor its noise is read at: its own output, or, when the quantized
    model has no such tensor (a removed Relu/Clip took it over), the output of the
    activation that follows it alone (``FOLLOWER_OPS``)."""
    consumers: dict[str, list] = {}
    for node in graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    seen: dict[str, str] = {}
    for node in graph.node:
        tensor = node.output[0] if node.output else ""
        while tensor and tensor not in noise:
            readers = consumers.get(tensor, [])
            single = len(readers) == 1 and readers[0].op_type in FOLLOWER_OPS and readers[0].output
            tensor = readers[0].output[0] if single else ""
        if tensor:
            seen[node.name] = tensor
    return seen


def _layer(node, seen: dict[str, str], noise: dict[str, float], weights: dict[str, int]) -> LayerSensitivity | None:
    if node.name not in seen:
        return None
    out = noise[seen[node.name]]
    before = max((noise.get(i, 0.0) for i in node.input), default=0.0)
    sqnr = MAX_SQNR_DB if out <= 10 ** (-MAX_SQNR_DB / 10) else -10 * np.log10(out)
    weight_bytes = sum(weights.get(i, 0) for i in node.input)
    return LayerSensitivity(node.name, node.op_type, float(sqnr), float(out - before), weight_bytes)


def tensor_noise(float_model: Path, quant_model: Path, feeds: Sequence[Feeds]) -> dict[str, float]:
    """Relative noise power of every float tensor the two models share, over ``feeds``."""
    from onnxruntime.quantization.qdq_loss_debug import create_activation_matching

    with tempfile.TemporaryDirectory(prefix="edgevision-sens-") as tmp:
        reference = _activations(float_model, Path(tmp) / "float.onnx", feeds)
        quantized = _activations(quant_model, Path(tmp) / "quant.onnx", feeds)
    # The value after a tensor's QuantizeLinear/DequantizeLinear pair, where it has one.
    pairs = create_activation_matching(quantized)
    dequantized = {name: pair["post_qdq"] for name, pair in pairs.items() if pair.get("post_qdq") is not None}
    quantized = {**quantized, **dequantized}
    return {name: relative_noise(reference[name], quantized[name]) for name in reference if name in quantized}


def relative_noise(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> float:
    """``sum((ref - cand)^2) / sum(ref^2)`` over a list of tensors (0 for identical tensors)."""
    ref = np.concatenate([np.asarray(r, dtype=np.float64).ravel() for r in reference])
    cand = np.concatenate([np.asarray(c, dtype=np.float64).ravel() for c in candidate])
    if ref.shape != cand.shape:
        return 0.0
    signal = float(np.sum(ref**2))
    return float(np.sum((ref - cand) ** 2)) / max(signal, 1e-30)


def _activations(model: Path, augmented: Path, feeds: Sequence[Feeds]) -> dict[str, list[np.ndarray]]:
    """Every float tensor of ``model`` for every feed (ORT's ``qdq_loss_debug`` helpers)."""
    import onnxruntime as ort
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        modify_model_output_intermediate_tensors,
    )

    with contextlib.redirect_stdout(io.StringIO()):
        modify_model_output_intermediate_tensors(str(model), str(augmented))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    return collect_activations(str(augmented), iter(list(feeds)), session_options=options)


# ----------------------------------------------------------------------------- output sensitivity


def rank_by_output(
    float_model: Path, feeds: Sequence[Feeds], *, skip: Sequence[str] = (), per_channel: bool = True
) -> list[LayerSensitivity]:
    """Weighted layers ranked by how much the model's *outputs* change when that layer alone is int8.

    Each layer in turn gets int8 weights (symmetric, per output channel) and a uint8 input
    (over its calibration min/max), simulated in float while every other layer stays float;
    ``added_noise`` is the relative noise power then found on the outputs (averaged over
    them). A layer's local SQNR says little about this: on MoveNet Lightning the first
    depthwise convolution's int8 weights are 51 dB off alone, yet take the heat maps down to
    9 dB, while layers with noisier tensors barely reach the outputs. One ONNX Runtime
    session per layer, on a few inputs.
    """
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    model = onnx.load(str(float_model))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    layers = [
        n
        for n in graph.node
        if n.op_type in WEIGHTED_OPS and n.name not in set(skip) and len(n.input) > 1 and n.input[1] in inits
    ]
    outputs = [o.name for o in graph.output]
    inputs = sorted({n.input[0] for n in layers if n.input[0] not in inits})
    options = ort.SessionOptions()
    options.log_severity_level = 3

    def session(proto):
        return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in graph.output}
    probe.graph.output.extend(
        helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None) for t in inputs if t not in known
    )
    names = [o.name for o in probe.graph.output]
    low, high = dict.fromkeys(inputs, 0.0), dict.fromkeys(inputs, 0.0)
    reference = []
    runner = session(probe)
    for feed in feeds:
        values = dict(zip(names, runner.run(None, feed)))
        reference.append([values[o] for o in outputs])
        for t in inputs:
            low[t], high[t] = min(low[t], float(values[t].min())), max(high[t], float(values[t].max()))
    weights = {t.name: int(np.prod(t.dims)) * 4 for t in graph.initializer}
    ranked = []
    for node in layers:
        original_weight = inits[node.input[1]]
        original_input = node.input[0]
        inits[node.input[1]] = fake = numpy_helper.from_array(
            fake_quantized_weights(numpy_helper.to_array(original_weight), per_channel=per_channel),
            original_weight.name,
        )
        graph.initializer.remove(original_weight)
        graph.initializer.append(fake)
        added = _fake_quantized_input(graph, node, low.get(original_input, 0.0), high.get(original_input, 0.0))
        try:
            runner = session(model)
            candidate = [runner.run(outputs, feed) for feed in feeds]
        finally:
            graph.initializer.remove(fake)
            graph.initializer.append(original_weight)
            inits[node.input[1]] = original_weight
            node.input[0] = original_input
            for extra in added:
                graph.node.remove(extra) if hasattr(extra, "op_type") else graph.initializer.remove(extra)
        noise = output_noise(reference, candidate)
        sqnr = MAX_SQNR_DB if noise <= 10 ** (-MAX_SQNR_DB / 10) else -10 * float(np.log10(noise))
        ranked.append(
            LayerSensitivity(node.name, node.op_type, sqnr, noise, sum(weights.get(i, 0) for i in node.input))
        )
    return sorted(ranked, key=lambda r: -r.added_noise)


def output_noise(reference: Sequence[Sequence[np.ndarray]], candidate: Sequence[Sequence[np.ndarray]]) -> float:
    """Mean over outputs of their relative noise (``relative_noise``) over all feeds.

    An output whose shape changed on some feed (a detector's boxes after NMS) counts as all
    noise there: what it holds changed.

    >>> ref = [[np.ones(4), np.ones(2)]]
    >>> output_noise(ref, [[np.ones(4), np.ones(3)]]), output_noise(ref, [[np.zeros(4), np.ones(2)]])
    (0.5, 0.5)
    """
    per_output = []
    for i in range(len(reference[0]) if reference else 0):
        same = [(r[i], c[i]) for r, c in zip(reference, candidate) if np.shape(r[i]) == np.shape(c[i])]
        changed = len(reference) - len(same)
        noise = relative_noise([r for r, _ in same], [c for _, c in same]) if same else 0.0
        per_output.append((noise * len(same) + changed) / len(reference))
    return float(np.mean(per_output)) if per_output else 0.0


def fake_quantized_weights(weights: np.ndarray, *, per_channel: bool = True) -> np.ndarray:
    """``weights`` rounded to symmetric int8 steps (per output channel, axis 0), as float32.

    >>> w = np.array([[1.0, 0.3], [0.5, -0.1]], np.float32)
    >>> (fake_quantized_weights(w) * 127 / np.array([[1.0], [0.5]])).round(3).tolist()  # in int8 steps
    [[127.0, 38.0], [127.0, -25.0]]
    """
    w = np.asarray(weights, dtype=np.float32)
    axes = tuple(range(1, w.ndim)) if per_channel and w.ndim > 1 else None
    scale = np.abs(w).max(axis=axes, keepdims=axes is not None) / 127.0
    scale = np.where(scale > 0, scale, 1.0)
    return (np.clip(np.round(w / scale), -127, 127) * scale).astype(np.float32)


def _fake_quantized_input(graph, node, low: float, high: float) -> list:
    """Put a uint8 QuantizeLinear/DequantizeLinear pair over [low, high] on ``node``'s first input.

    Returns the nodes and initializers added (for the caller to remove).
    """
    from onnx import helper, numpy_helper

    if not high > low:
        return []
    scale = (high - low) / 255.0
    zero = int(np.clip(round(-low / scale), 0, 255))
    base = f"_edgevision_probe_{node.name}"
    constants = [
        numpy_helper.from_array(np.array(scale, np.float32), base + "_scale"),
        numpy_helper.from_array(np.array(zero, np.uint8), base + "_zero"),
    ]
    quant = helper.make_node("QuantizeLinear", [node.input[0], constants[0].name, constants[1].name], [base + "_q"])
    dequant = helper.make_node("DequantizeLinear", [base + "_q", constants[0].name, constants[1].name], [base + "_dq"])
    graph.initializer.extend(constants)
    position = list(graph.node).index(node)
    graph.node.insert(position, dequant)
    graph.node.insert(position, quant)
    node.input[0] = base + "_dq"
    return [quant, dequant, *constants]
