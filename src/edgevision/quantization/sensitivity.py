"""Which layers a quantized model loses its accuracy in: per-layer noise added, from one run.

Both the float model and its quantized (QDQ) twin are run on a few inputs with every
intermediate tensor exposed (ONNX Runtime's ``qdq_loss_debug`` does the exposing and the
collecting). A QDQ graph keeps the float tensor names, so every tensor of the quantized
model can be compared with the same tensor of the float model.

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

    graph = onnx.load(str(float_model), load_external_data=False).graph
    # ORT folds a Relu or Clip into the quantization of the layer before it: the layer's output
    # is then not in the quantized model, and the activation's output stands for it.
    folded = {n.output[0]: n.input[0] for n in graph.node if n.op_type in ("Relu", "Clip")}
    noise = tensor_noise(float_model, quant_model, feeds, after_qdq=set(folded))
    noise |= {layer: noise[out] for out, layer in folded.items() if layer not in noise and out in noise}
    weights = {t.name: int(np.prod(t.dims)) * 4 for t in graph.initializer}
    ranked = [_layer(node, noise, weights) for node in graph.node if node.name not in set(skip)]
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


def _layer(node, noise: dict[str, float], weights: dict[str, int]) -> LayerSensitivity | None:
    if not node.output or node.output[0] not in noise:
        return None
    out = noise[node.output[0]]
    before = max((noise.get(i, 0.0) for i in node.input), default=0.0)
    sqnr = MAX_SQNR_DB if out <= 10 ** (-MAX_SQNR_DB / 10) else -10 * np.log10(out)
    weight_bytes = sum(weights.get(i, 0) for i in node.input)
    return LayerSensitivity(node.name, node.op_type, float(sqnr), float(out - before), weight_bytes)


def tensor_noise(
    float_model: Path, quant_model: Path, feeds: Sequence[Feeds], *, after_qdq: set[str] = frozenset()
) -> dict[str, float]:
    """Relative noise power of every float tensor the two models share, over ``feeds``.

    The tensors named in ``after_qdq`` are taken from the quantized model as the next layer
    reads them, after their QuantizeLinear / DequantizeLinear pair: where ORT folded an
    activation into that pair, the tensor itself holds the values before the activation.
    """
    with tempfile.TemporaryDirectory(prefix="edgevision-sens-") as tmp:
        reference = _activations(float_model, Path(tmp) / "float.onnx", feeds)
        quantized = _activations(quant_model, Path(tmp) / "quant.onnx", feeds)
    quantized |= {
        n: quantized[f"{n}_DequantizeLinear_Output"] for n in after_qdq if f"{n}_DequantizeLinear_Output" in quantized
    }
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
