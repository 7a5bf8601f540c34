"""Facts read from an ONNX graph: MACs per layer, parameters, weight precision, a Graphviz drawing.

MACs are counted here, on top of ONNX shape inference, for the ops that carry nearly all
of a vision model's compute: Conv, ConvTranspose, Gemm, MatMul and their quantized forms
(QLinearConv, ConvInteger, QLinearMatMul, MatMulInteger). Element-wise ops, pooling and
resizing are not counted, as in PyTorch's FlopCounterMode and thop. A counter this small
is easier to keep right than a dependency (onnx-tool and onnx-opcounter pin older onnx).

>>> model = load_onnx("model.onnx")          # doctest: +SKIP
>>> sum(onnx_macs(model).values()) / 1e9     # doctest: +SKIP
0.72
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np

from edgevision.errors import EdgevisionError
from edgevision.modelfiles import read_onnx

logger = logging.getLogger(__name__)

# op type -> (index of the data input, index of the weight input)
_CONV_LIKE = {"Conv": (0, 1), "QLinearConv": (0, 3), "ConvInteger": (0, 1)}
_MATMUL_LIKE = {"MatMul": (0, 1), "Gemm": (0, 1), "QLinearMatMul": (0, 3), "MatMulInteger": (0, 1)}
_PASS_THROUGH = {"DequantizeLinear", "Cast", "Identity", "Transpose", "Reshape"}  # weight -> op paths
_PRECISION = {1: "fp32", 10: "fp16", 16: "bf16", 11: "fp64", 3: "int8", 2: "int8", 6: "int32", 7: "int64", 9: "bool"}


def load_onnx(path: str | Path):
    """The ONNX model with inferred shapes (weights kept, external data loaded)."""
    import onnx

    model = read_onnx(path)
    try:
        return onnx.shape_inference.infer_shapes(model)
    except Exception as exc:  # shape inference fails on some custom-domain ops; counts then miss those layers
        logger.info("shape inference failed (%s); MACs of layers without shapes are not counted", exc)
        return model


def shapes(model) -> dict[str, tuple[int, ...]]:
    """Static shape of every tensor the graph knows (dynamic dimensions as 1)."""
    found = {t.name: tuple(t.dims) for t in model.graph.initializer}
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        dims = value.type.tensor_type.shape.dim
        found.setdefault(value.name, tuple(d.dim_value if d.dim_value > 0 else 1 for d in dims))
    return found


def _node_macs(node, known: dict[str, tuple[int, ...]]) -> int:
    if node.op_type in _CONV_LIKE and len(node.output) and node.output[0] in known:
        weight = known.get(node.input[_CONV_LIKE[node.op_type][1]])
        return (
            int(np.prod(known[node.output[0]], dtype=np.int64) * np.prod(weight[1:], dtype=np.int64)) if weight else 0
        )
    if node.op_type == "ConvTranspose":
        data, weight = known.get(node.input[0]), known.get(node.input[1])
        return int(np.prod(data, dtype=np.int64) * np.prod(weight[1:], dtype=np.int64)) if data and weight else 0
    if node.op_type in _MATMUL_LIKE and node.output[0] in known:
        data = known.get(node.input[_MATMUL_LIKE[node.op_type][0]])
        if not data:
            return 0
        trans_a = any(a.name == "transA" and a.i for a in node.attribute)
        inner = data[-2] if trans_a and len(data) >= 2 else data[-1]
        return int(np.prod(known[node.output[0]], dtype=np.int64) * inner)
    return 0


def onnx_macs(model) -> dict[str, int]:
    """Multiply-accumulates of every counted node, by node name (or output name when unnamed)."""
    known = shapes(model)
    out = {}
    for node in model.graph.node:
        macs = _node_macs(node, known)
        if macs:
            out[node.name or node.output[0]] = macs
    return out


def op_histogram(model) -> Counter:
    return Counter(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}" for n in model.graph.node)


def weight_precision(model) -> dict[str, dict[str, int]]:
    """Per precision (fp32, fp16, int8 ...): how many weight tensors, elements and bytes."""
    from onnx import numpy_helper

    out: dict[str, dict[str, int]] = {}
    for tensor in model.graph.initializer:
        kind = _PRECISION.get(tensor.data_type, f"type{tensor.data_type}")
        entry = out.setdefault(kind, {"tensors": 0, "elements": 0, "bytes": 0})
        entry["tensors"] += 1
        entry["elements"] += int(np.prod(tensor.dims, dtype=np.int64))
        entry["bytes"] += int(numpy_helper.to_array(tensor).nbytes)
    return out


def parameter_count(model) -> int:
    """Elements of the float and int8 weights (int32 biases of quantized layers included; shape constants not)."""
    precision = weight_precision(model)
    return sum(v["elements"] for k, v in precision.items() if k not in ("int64", "bool", "fp64"))


def node_parameters(model) -> dict[str, int]:
    """Weight elements each compute node reads, following Dequantize/Cast/Transpose chains to initializers."""
    sizes = {t.name: int(np.prod(t.dims, dtype=np.int64)) for t in model.graph.initializer}
    producers = {out: n for n in model.graph.node for out in n.output}
    result = {}
    for node in model.graph.node:
        if node.op_type in _PASS_THROUGH:
            continue
        total = sum(_weight_elements(name, sizes, producers, depth=0) for name in node.input)
        if total:
            result[node.name or node.output[0]] = total
    return result


def _weight_elements(name: str, sizes: dict[str, int], producers: dict, depth: int) -> int:
    if name in sizes:
        return sizes[name] if sizes[name] > 1 else 0
    node = producers.get(name)
    if node is None or node.op_type not in _PASS_THROUGH or depth > 3:
        return 0
    return _weight_elements(node.input[0], sizes, producers, depth + 1) if node.input else 0


# ----------------------------------------------------------------------------- drawing

_COLOURS = {
    "Conv": "#aecbfa",
    "ConvTranspose": "#aecbfa",
    "Gemm": "#aecbfa",
    "MatMul": "#aecbfa",
    "QLinearConv": "#f9c74f",
    "QuantizeLinear": "#fde68a",
    "DequantizeLinear": "#fde68a",
    "ConvInteger": "#f9c74f",
    "MatMulInteger": "#f9c74f",
    "Relu": "#c7eac9",
    "Sigmoid": "#c7eac9",
    "Clip": "#c7eac9",
    "HardSigmoid": "#c7eac9",
    "HardSwish": "#c7eac9",
    "Add": "#e5e7eb",
    "Mul": "#e5e7eb",
    "Concat": "#fbd5d5",
    "MaxPool": "#d9c8f5",
    "AveragePool": "#d9c8f5",
    "Resize": "#d9c8f5",
    "Reshape": "#f3f4f6",
    "Transpose": "#f3f4f6",
    "Slice": "#f3f4f6",
}


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _shape_text(shape) -> str:
    return "x".join(str(d) for d in shape) if shape else ""


def to_dot(model) -> str:
    """Graphviz source: one box per node (op type, name, weight shape), edges labelled with tensor shapes."""
    known = shapes(model)
    weights = {t.name for t in model.graph.initializer}
    producers = {out: i for i, n in enumerate(model.graph.node) for out in n.output}
    lines = [
        "digraph G {",
        'rankdir=TB; node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
        'edge [fontname="Helvetica", fontsize=8, color="#666666"];',
    ]
    for value in model.graph.input:
        if value.name not in weights:
            lines.append(
                f'{_quote("in:" + value.name)} [shape=ellipse, fillcolor="#ffffff", label={_quote(value.name + chr(10) + _shape_text(known.get(value.name)))}];'
            )
    for i, node in enumerate(model.graph.node):
        lines += _dot_node(i, node, known, weights, producers)
    for value in model.graph.output:
        lines.append(f'{_quote("out:" + value.name)} [shape=ellipse, fillcolor="#ffffff", label={_quote(value.name)}];')
        if value.name in producers:
            lines.append(f"n{producers[value.name]} -> {_quote('out:' + value.name)};")
    return "\n".join(lines + ["}"])


def _dot_node(i: int, node, known: dict, weights: set[str], producers: dict) -> list[str]:
    params = [_shape_text(known.get(name)) for name in node.input if name in weights and len(known.get(name, ())) > 1]
    name = node.name if len(node.name) <= 40 else "…" + node.name[-39:]
    label = "\n".join([node.op_type, name] + ([f"W {params[0]}"] if params else []))
    colour = _COLOURS.get(node.op_type, "#ffffff")
    lines = [f"n{i} [label={_quote(label)}, fillcolor={_quote(colour)}];"]
    for tensor in node.input:
        if tensor in producers:
            lines.append(f"n{producers[tensor]} -> n{i} [label={_quote(_shape_text(known.get(tensor)))}];")
        elif tensor and tensor not in weights:
            lines.append(f"{_quote('in:' + tensor)} -> n{i};")
    return lines


def render_svg(dot_source: str) -> str:
    """SVG text drawn by Graphviz's ``dot``; a clear error when Graphviz is not installed."""
    dot = shutil.which("dot")
    if dot is None:
        raise EdgevisionError("drawing the graph needs Graphviz's dot command; install it (apt-get install graphviz).")
    done = subprocess.run([dot, "-Tsvg"], input=dot_source, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise EdgevisionError(f"Graphviz could not draw the graph: {' '.join(done.stderr.split())}")
    return done.stdout[done.stdout.find("<svg") :]
