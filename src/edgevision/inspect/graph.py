"""Facts read from an ONNX graph: MACs per layer, parameters, weight precision, a Graphviz drawing.

MACs are counted here, on top of ONNX shape inference, for the ops that carry nearly all
of a vision model's compute: Conv, ConvTranspose, Gemm, MatMul and their quantized forms
(QLinearConv, ConvInteger, QLinearMatMul, MatMulInteger). Element-wise ops, pooling and
resizing are not counted, as in PyTorch's FlopCounterMode and thop. A counter this small
is easier to keep right than a dependency (onnx-tool and onnx-opcounter pin older onnx).

Dynamic input dimensions are fixed before shape inference (``fix_input_dims``): height and
width of an image input at ``DEFAULT_IMAGE_SIZE`` unless a size is given, every other
dynamic dimension at 1; ``CountedAt`` says which. Nodes inside the bodies of Loop, If and
Scan are counted too (once: a loop's trip count is unknown before it runs), under the path
of the node that holds them, such as ``loop/body``.

>>> model, at = load_onnx_at("model.onnx", input_size=(320, 320))   # doctest: +SKIP
>>> sum(onnx_macs(model).values()) / 1e9, at.assumed                 # doctest: +SKIP
(0.18, {'images': {'height': 320, 'width': 320}})
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
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


DEFAULT_IMAGE_SIZE = (640, 640)  # width, height counted for an image input whose size is dynamic
_CHANNELS = (1, 3, 4)  # an image input's channel dimension: grey, RGB/BGR, RGBA


@dataclass
class CountedAt:
    """The input shapes MACs were counted at, and the dimensions that were dynamic in the file."""

    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    assumed: dict[str, dict[str, int]] = field(default_factory=dict)  # input -> {dimension: value assumed}
    size_from: str = ""  # where the assumed height and width came from (the model's card, --input-size)

    def text(self) -> str:
        """``images 1x3x640x640 (assumed batch 1, height 640, width 640)``, one part per input."""
        parts = []
        for name, shape in self.shapes.items():
            guessed = ", ".join(f"{dim} {value}" for dim, value in self.assumed.get(name, {}).items())
            parts.append(f"{name} {'x'.join(map(str, shape))}" + (f" (assumed {guessed})" if guessed else ""))
        return "; ".join(parts) + (f", size from {self.size_from}" if self.size_from and self.assumed else "")

    def to_dict(self) -> dict:
        shapes = {n: list(s) for n, s in self.shapes.items()}
        return {"shapes": shapes, "assumed": self.assumed, "size_from": self.size_from or None}


def load_onnx(path: str | Path):
    """The ONNX model with inferred shapes (weights kept, external data loaded)."""
    return infer_shapes(read_onnx(path))


def load_onnx_at(path: str | Path, *, input_size: tuple[int, int] | None = None):
    """The ONNX model with its dynamic input dimensions fixed (see ``fix_input_dims``), shapes inferred."""
    model, counted = fix_input_dims(read_onnx(path), input_size=input_size)
    return infer_shapes(model), counted


def infer_shapes(model):
    """``model`` with ONNX shape inference run (subgraphs included); unchanged when inference fails."""
    import onnx

    try:
        return onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as exc:  # shape inference fails on some custom-domain ops; counts then miss those layers
        logger.info("shape inference failed (%s); MACs of layers without shapes are not counted", exc)
        return model


def spatial_axes(dims: list) -> tuple[int, int] | None:
    """Axes of height and width when ``dims`` (ints, 0 or None when dynamic) look like an image.

    >>> spatial_axes([1, 3, 0, 0]), spatial_axes([1, 0, 0, 3]), spatial_axes([1, 100])
    ((2, 3), (1, 2), None)
    """
    if len(dims) != 4:
        return None
    if dims[3] in _CHANNELS and dims[1] not in _CHANNELS:
        return (1, 2)
    return (2, 3)


def fix_input_dims(model, *, input_size: tuple[int, int] | None = None):
    """A copy of ``model`` whose graph inputs have only fixed dimensions, and what was assumed.

    Height and width of a 4-D input take ``input_size`` (width, height; else
    ``DEFAULT_IMAGE_SIZE``) when dynamic; any other dynamic dimension takes 1. Dimensions
    fixed in the file are kept, so ``input_size`` changes nothing on a static model.
    """
    from onnx import ModelProto

    fixed = ModelProto()
    fixed.CopyFrom(model)
    weights = {t.name for t in fixed.graph.initializer}
    counted = CountedAt()
    for value in fixed.graph.input:
        if value.name in weights:
            continue
        dims = value.type.tensor_type.shape.dim
        guessed = _fix_dims(dims, input_size or DEFAULT_IMAGE_SIZE)
        counted.shapes[value.name] = tuple(d.dim_value for d in dims)
        if guessed:
            counted.assumed[value.name] = guessed
    if input_size and not counted.assumed:
        logger.info("the model's input size is fixed in the file; input size %s is not used", input_size)
    return fixed, counted


def _fix_dims(dims, input_size: tuple[int, int]) -> dict[str, int]:
    """Set every dynamic dimension in ``dims``; return {dimension name: value} of those set."""
    axes = spatial_axes([d.dim_value for d in dims])
    width, height = input_size
    names = {**({0: "batch"} if len(dims) > 1 else {}), **({axes[0]: "height", axes[1]: "width"} if axes else {})}
    guessed = {}
    for i, dim in enumerate(dims):
        if dim.dim_value > 0:
            continue
        label = names.get(i) or dim.dim_param or f"axis {i}"
        value = {"height": height, "width": width}.get(names.get(i, ""), 1)
        dim.dim_value = value  # replaces dim_param: the two share a oneof
        guessed[label] = value
    return guessed


def subgraphs(node) -> Iterator[tuple[str, object]]:
    """(attribute name, graph) of every body a node holds: Loop/Scan ``body``, If branches."""
    for attr in node.attribute:
        if attr.HasField("g"):
            yield attr.name, attr.g
        for i, graph in enumerate(attr.graphs):
            yield f"{attr.name}[{i}]", graph


def walk_nodes(graph, path: str = "") -> Iterator[tuple[str, object]]:
    """(path, node) of every node, those inside subgraphs too; the main graph's path is ``""``.

    A node in the body of a Loop named ``nms`` has the path ``nms/body``.
    """
    for node in graph.node:
        yield path, node
        for attr, sub in subgraphs(node):
            yield from walk_nodes(sub, "/".join(p for p in (path, f"{node_name(node)}/{attr}") if p))


def node_name(node) -> str:
    """The node's name, else its first output's name."""
    return node.name or (node.output[0] if node.output else node.op_type)


def qualified_name(path: str, node) -> str:
    """The node's name prefixed with its subgraph path (``nms/body/topk``)."""
    return f"{path}/{node_name(node)}" if path else node_name(node)


def _graphs(graph) -> Iterator:
    yield graph
    for _, node in walk_nodes(graph):
        for _, sub in subgraphs(node):
            yield sub


def shapes(model) -> dict[str, tuple[int, ...]]:
    """Static shape of every tensor the graph and its subgraphs know (dynamic dimensions as 1)."""
    found: dict[str, tuple[int, ...]] = {}
    for graph in _graphs(model.graph):
        found.update({t.name: tuple(t.dims) for t in graph.initializer})
        for value in [*graph.input, *graph.output, *graph.value_info]:
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
    """Multiply-accumulates of every counted node, by ``qualified_name`` (subgraph bodies counted once)."""
    known = shapes(model)
    out = {}
    for path, node in walk_nodes(model.graph):
        macs = _node_macs(node, known)
        if macs:
            out[qualified_name(path, node)] = macs
    return out


def op_type(node) -> str:
    """The op type, prefixed with its domain for custom domains (``com.microsoft.QLinearAdd``)."""
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"


def op_histogram(model) -> Counter:
    """How many nodes of each op type, those inside Loop/If/Scan bodies included."""
    return Counter(op_type(n) for _, n in walk_nodes(model.graph))


def subgraph_ops(model) -> dict[str, Counter]:
    """Per subgraph path (``nms/body``): how many nodes of each op type it holds itself."""
    found: dict[str, Counter] = {}
    for path, node in walk_nodes(model.graph):
        if path:
            found.setdefault(path, Counter())[op_type(node)] += 1
    return found


def weight_precision(model) -> dict[str, dict[str, int]]:
    """Per precision (fp32, fp16, int8 ...): how many weight tensors, elements and bytes."""
    from onnx import numpy_helper

    out: dict[str, dict[str, int]] = {}
    for tensor in (t for graph in _graphs(model.graph) for t in graph.initializer):
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
    sizes = {t.name: int(np.prod(t.dims, dtype=np.int64)) for g in _graphs(model.graph) for t in g.initializer}
    nodes = list(walk_nodes(model.graph))
    producers = {out: n for _, n in nodes for out in n.output}
    result = {}
    for path, node in nodes:
        if node.op_type in _PASS_THROUGH:
            continue
        total = sum(_weight_elements(name, sizes, producers, depth=0) for name in node.input)
        if total:
            result[qualified_name(path, node)] = total
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
    "Loop": "#fcd5b4",
    "If": "#fcd5b4",
    "Scan": "#fcd5b4",
    "NonMaxSuppression": "#fbd5d5",
    "TopK": "#fbd5d5",
}


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _shape_text(shape) -> str:
    return "x".join(str(d) for d in shape) if shape else ""


def to_dot(model, *, bodies: bool = True) -> str:
    """Graphviz source: one box per node (op type, name, weight shape), edges labelled with tensor shapes.

    With ``bodies``, the bodies of Loop, If and Scan nodes are drawn too, each in a dashed
    box joined to the node that holds it; edges from the outer graph show what a body reads.
    """
    known = shapes(model)
    weights = {t.name for graph in _graphs(model.graph) for t in graph.initializer}
    lines = [
        "digraph G {",
        'rankdir=TB; compound=true; node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
        'edge [fontname="Helvetica", fontsize=8, color="#666666"];',
    ]
    inputs = [v for v in model.graph.input if v.name not in weights]
    lines += [_dot_value("in:" + v.name, v.name + chr(10) + _shape_text(known.get(v.name))) for v in inputs]
    drawing = _Drawing(known, weights, bodies)
    body, producers = drawing.graph(model.graph, "n", {v.name: "in:" + v.name for v in inputs})
    lines += body
    for value in model.graph.output:
        lines.append(_dot_value("out:" + value.name, value.name))
        if value.name in producers:
            lines.append(f"{_quote(producers[value.name])} -> {_quote('out:' + value.name)};")
    # Edges last, outside every body's box: Graphviz puts a node in the box where it is first named.
    return "\n".join(lines + drawing.edges + ["}"])


def _dot_value(key: str, label: str) -> str:
    return f'{_quote(key)} [shape=ellipse, fillcolor="#ffffff", label={_quote(label)}];'


@dataclass
class _Drawing:
    """What drawing a graph and its bodies needs: tensor shapes, weight names, whether to open bodies."""

    known: dict
    weights: set[str]
    bodies: bool
    edges: list[str] = field(default_factory=list)  # every edge, written after all nodes

    def graph(self, graph, prefix: str, outer: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        """Lines for ``graph``'s nodes (ids ``prefix0``, ``prefix1`` ...) and the id producing each tensor."""
        producers = {**outer, **{out: f"{prefix}{i}" for i, n in enumerate(graph.node) for out in n.output}}
        lines = []
        for i, node in enumerate(graph.node):
            lines.append(_dot_node(f"{prefix}{i}", node, self.known, self.weights))
            self.edges += _dot_edges(f"{prefix}{i}", node, self.known, producers)
            if self.bodies:
                for attr, sub in subgraphs(node):
                    lines += self.cluster(f"{prefix}{i}", node, attr, sub, producers)
        return lines, producers

    def cluster(self, holder: str, node, attr: str, sub, outer: dict[str, str]) -> list[str]:
        """A dashed box with the body ``sub`` of ``node`` and its inputs; an edge from ``node`` into it."""
        prefix = f"{holder}_{attr}_".replace("[", "_").replace("]", "")
        name = f"cluster_{prefix}"
        head = [
            f"subgraph {_quote(name)} {{",
            f'label={_quote(f"{node.op_type} {node_name(node)}: {attr}")}; style="dashed,rounded"; color="#888888";',
        ]
        inputs = {v.name: f"{prefix}in:{v.name}" for v in sub.input}
        values = [
            _dot_value(key, f"{tensor}{chr(10)}{_shape_text(self.known.get(tensor))}") for tensor, key in inputs.items()
        ]
        body, _ = self.graph(sub, prefix, {**outer, **inputs})
        first = next(iter(inputs.values()), f"{prefix}0" if len(sub.node) else None)
        if first:
            self.edges.append(
                f"{_quote(holder)} -> {_quote(first)} [style=dashed, lhead={_quote(name)}, label={_quote(attr)}];"
            )
        return head + values + body + ["}"]


def _dot_node(key: str, node, known: dict, weights: set[str]) -> str:
    params = [_shape_text(known.get(name)) for name in node.input if name in weights and len(known.get(name, ())) > 1]
    name = node.name if len(node.name) <= 40 else "…" + node.name[-39:]
    label = "\n".join([node.op_type, name] + ([f"W {params[0]}"] if params else []))
    colour = _COLOURS.get(node.op_type, "#ffffff")
    return f"{_quote(key)} [label={_quote(label)}, fillcolor={_quote(colour)}];"


def _dot_edges(key: str, node, known: dict, producers: dict[str, str]) -> list[str]:
    return [
        f"{_quote(producers[tensor])} -> {_quote(key)} [label={_quote(_shape_text(known.get(tensor)))}];"
        for tensor in node.input
        if tensor in producers
    ]


def render_svg(dot_source: str) -> str:
    """SVG text drawn by Graphviz's ``dot``; a clear error when Graphviz is not installed."""
    dot = shutil.which("dot")
    if dot is None:
        raise EdgevisionError("drawing the graph needs Graphviz's dot command; install it (apt-get install graphviz).")
    done = subprocess.run([dot, "-Tsvg"], input=dot_source, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise EdgevisionError(f"Graphviz could not draw the graph: {' '.join(done.stderr.split())}")
    return done.stdout[done.stdout.find("<svg") :]
