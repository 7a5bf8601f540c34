"""Post-processing inside an exported graph (NMS, top-k, loops): found once, kept in float by every backend.

>>> found = postprocessing_nodes(onnx.load("ssd.onnx"))  # doctest: +SKIP
>>> found["Postprocessor/BatchMultiClassNonMaxSuppression/map/while/Loop"]  # doctest: +SKIP
'Loop: control flow around post-processing'

Third-party detectors often carry their post-processing in the graph: TF Object Detection
API exports run ``NonMaxSuppression`` inside a ``Loop`` over the batch, others end in
``TopK``, ``NonZero`` and ``Gather`` on the selected indices. Those nodes pick and reorder
boxes, their outputs have data-dependent shapes, and int8 (or fp16) scores change which
boxes survive: NNCF cannot even build its graph over some of them, and ONNX Runtime's fp16
converter breaks the types of the tensors a loop body reads from outside.

The post-processing is: every node of ``SEED_OPS``, everything computed from their outputs
(the data-dependent part), and the non-weighted nodes whose outputs feed only that (the
score transposes and slices before the NMS, the shape arithmetic of the loop's trip count).
ONNX tools have no such analysis, so it is written here over the node graph, counting the
tensors a subgraph (a loop body) reads from the outer graph as inputs of the loop node.

A model file can also name nodes to keep float itself: a JSON ``{"reason": ..., "nodes":
[...]}`` under the metadata key ``FLOAT_NODES_KEY`` (the zoo's BlazePose landmark file names
its pixel-regression head so). Those are kept float like post-processing, by every backend.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from edgevision.modelfiles import FLOAT_NODES_KEY  # metadata of a model file: nodes it asks to keep float

SEED_OPS = ("NonMaxSuppression", "TopK", "NonZero", "Loop", "If", "Scan", "Unique", "RoiAlign")
WEIGHTED_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})
CONTROL_FLOW_OPS = frozenset({"Loop", "If", "Scan"})
DECLARED = "the model file asks: "  # how the reasons of those nodes start


def postprocessing_nodes(model) -> dict[str, str]:
    """Names of the top-level post-processing nodes of ``model`` (an ``onnx.ModelProto``), with why, in graph order.

    Empty for a graph without ``SEED_OPS``: a plain backbone with box and score outputs
    has no post-processing to keep out of int8.
    """
    graph = model.graph
    nodes = list(graph.node)
    consumers = _consumers(nodes)
    found = {_key(n, i): seed_reason(n) for i, n in enumerate(nodes) if n.op_type in SEED_OPS}
    _add_descendants(nodes, consumers, found)
    _add_feeders(nodes, consumers, found, outputs={o.name for o in graph.output})
    for key, reason in mixed_output_tail(nodes, consumers, {o.name for o in graph.output}).items():
        found.setdefault(key, reason)
    for key, reason in declared_float_nodes(model).items():
        found.setdefault(key, reason)
    return {_key(n, i): found[_key(n, i)] for i, n in enumerate(nodes) if _key(n, i) in found and n.name}


def declared_float_nodes(model) -> dict[str, str]:
    """The nodes ``model``'s metadata (``FLOAT_NODES_KEY``) asks to keep float, with its reason;
    names the graph does not have are ignored.

    >>> import onnx
    >>> m = onnx.helper.make_model(onnx.helper.make_graph(
    ...     [onnx.helper.make_node("Relu", ["x"], ["y"], name="head")], "g", [], []))
    >>> onnx.helper.set_model_props(m, {FLOAT_NODES_KEY: '{"reason": "pixels", "nodes": ["head", "gone"]}'})
    >>> declared_float_nodes(m)
    {'head': 'the model file asks: pixels'}
    """
    props = {p.key: p.value for p in model.metadata_props}
    if FLOAT_NODES_KEY not in props:
        return {}
    declared = json.loads(props[FLOAT_NODES_KEY])
    names = {n.name for n in model.graph.node}
    reason = DECLARED + str(declared.get("reason", "keep float"))
    return {name: reason for name in declared.get("nodes", []) if name in names}


# Ops that only move values: a probability stays a probability through them.
_SHAPE_OPS = frozenset({"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Slice", "Split", "Identity"})
MIXED = "joins probabilities and box values in one output"  # the reason recorded per node


def mixed_output_tail(nodes, consumers, outputs: set[str]) -> dict[str, str]:
    """The output tail of a head that concatenates probabilities with box values, e.g. YOLOv8's
    ``cat(boxes * stride, sigmoid(cls))`` or official YOLOX's ``cat(reg, sigmoid(obj), sigmoid(cls))``.

    One int8 scale cannot hold pixels (hundreds) and probabilities (0-1) at once: the scores
    collapse to zero. The tail is every non-weighted node after the last Conv/MatMul on all
    its paths to the outputs; it is returned only when it holds such a mixing Concat.
    """
    producer = {out: i for i, n in enumerate(nodes) for out in n.output}
    tail: set[int] = set()
    for index in reversed(range(len(nodes))):
        node = nodes[index]
        if node.op_type in WEIGHTED_OPS or node.op_type in SEED_OPS or node.op_type == "Constant":
            continue
        readers = [i for out in node.output for i in consumers.get(out, [])]
        if (readers or outputs.intersection(node.output)) and all(i in tail for i in readers):
            tail.add(index)
    mixing = [i for i in tail if nodes[i].op_type == "Concat" and _mixes(nodes[i], nodes, producer)]
    if not mixing:
        return {}
    return {_key(nodes[i], i): MIXED for i in sorted(tail)}


def _mixes(concat, nodes, producer) -> bool:
    kinds = {_is_probability(name, nodes, producer) for name in concat.input if name in producer}
    return kinds == {True, False}


def _is_probability(tensor: str, nodes, producer) -> bool:
    """True when ``tensor`` is a Sigmoid/Softmax output, through shape-only ops."""
    while tensor in producer:
        node = nodes[producer[tensor]]
        if node.op_type in ("Sigmoid", "Softmax"):
            return True
        if node.op_type not in _SHAPE_OPS:
            return False
        tensor = node.input[0]
    return False


def subgraph_node_names(model, names: Iterable[str]) -> list[str]:
    """Names of every node inside the subgraphs (loop bodies, branches) of the nodes ``names``."""
    wanted = set(names)
    found: list[str] = []
    for node in model.graph.node:
        if node.name in wanted:
            for graph in _subgraphs(node):
                found += [n.name for n in _all_nodes(graph) if n.name]
    return found


def seed_reason(node) -> str:
    """Why a ``SEED_OPS`` node is post-processing: its op, and for a loop the seed ops inside."""
    if node.op_type not in CONTROL_FLOW_OPS:
        return node.op_type
    inner = sorted({n.op_type for g in _subgraphs(node) for n in _all_nodes(g) if n.op_type in SEED_OPS})
    return f"{node.op_type} with {', '.join(inner)} inside" if inner else node.op_type


def summary(found: dict[str, str]) -> str:
    """One line on what was kept in float and why, for the log and the metadata notes.

    >>> summary({"nms": "NonMaxSuppression", "g": "after NonMaxSuppression nms: data-dependent shape"})
    'kept 2 post-processing nodes in float (NonMaxSuppression, and the 1 node(s) around it): they select boxes and their output shapes depend on the data, so lower precision there would change which boxes survive'
    """
    mixed = sum(reason == MIXED for reason in found.values())
    declared = [r.removeprefix(DECLARED) for r in found.values() if r.startswith(DECLARED)]
    found = {k: r for k, r in found.items() if r != MIXED and not r.startswith(DECLARED)}
    head = f"kept {mixed} head-output nodes in float: each {MIXED}, which one int8 scale cannot hold" if mixed else ""
    if declared:
        asked = f"kept {len(declared)} nodes in float as the model file asks ({', '.join(dict.fromkeys(declared))})"
        head = f"{head}; {asked}" if head else asked
    if not found:
        return head
    seeds = [reason for reason in found.values() if not reason.startswith(("after ", "feeds "))]
    others = len(found) - len(seeds)
    return (f"{head}; " if head else "") + (
        f"kept {len(found)} post-processing nodes in float ({', '.join(dict.fromkeys(seeds))}"
        f"{f', and the {others} node(s) around it' if others else ''}): they select boxes and their output "
        "shapes depend on the data, so lower precision there would change which boxes survive"
    )


# ----------------------------------------------------------------------------- the walk


def _key(node, index: int) -> str:
    return node.name or f"#{index}"


def _consumers(nodes) -> dict[str, list[int]]:
    """Tensor name -> indices of the nodes reading it, subgraph reads of outer tensors included."""
    readers: dict[str, list[int]] = {}
    for index, node in enumerate(nodes):
        for name in set(node.input) | outer_reads(node):
            if name:
                readers.setdefault(name, []).append(index)
    return readers


def _add_descendants(nodes, consumers, found: dict[str, str]) -> None:
    """Everything computed from a post-processing output is post-processing too."""
    stack = [i for i, n in enumerate(nodes) if _key(n, i) in found]
    while stack:
        source = nodes[stack.pop()]
        for out in source.output:
            for index in consumers.get(out, []):
                key = _key(nodes[index], index)
                if key not in found:
                    found[key] = f"after {source.op_type} {source.name}: data-dependent shape"
                    stack.append(index)


def _add_feeders(nodes, consumers, found: dict[str, str], *, outputs: set[str]) -> None:
    """Non-weighted nodes whose every output feeds only post-processing (and no graph output)."""
    changed = True
    while changed:
        changed = False
        for index in reversed(range(len(nodes))):
            node, key = nodes[index], _key(nodes[index], index)
            if key in found or node.op_type in WEIGHTED_OPS or node.op_type == "Constant":
                continue
            readers = [i for out in node.output for i in consumers.get(out, [])]
            feeds_only_post = readers and all(_key(nodes[i], i) in found for i in readers)
            if feeds_only_post and not outputs.intersection(node.output):
                found[key] = "feeds only post-processing"
                changed = True


def _subgraphs(node) -> list:
    import onnx

    graphs = []
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            graphs.append(attr.g)
        elif attr.type == onnx.AttributeProto.GRAPHS:
            graphs.extend(attr.graphs)
    return graphs


def _all_nodes(graph) -> list:
    """The nodes of ``graph`` and of all its nested subgraphs."""
    found = []
    for node in graph.node:
        found.append(node)
        for sub in _subgraphs(node):
            found += _all_nodes(sub)
    return found


def outer_reads(node) -> set[str]:
    """Tensors the subgraphs of ``node`` read without defining them: outer-scope inputs of the node."""
    reads: set[str] = set()
    for graph in _subgraphs(node):
        defined = {i.name for i in graph.input} | {t.name for t in graph.initializer}
        inner = _all_nodes(graph)
        defined |= {out for n in inner for out in n.output}
        reads |= {name for n in inner for name in n.input if name and name not in defined}
    return reads


def rename_inputs(node, mapping: dict[str, str]) -> None:
    """Rename the tensors the subgraphs of ``node`` read (outer-scope reads), as ``mapping`` says."""
    for graph in _subgraphs(node):
        for inner in _all_nodes(graph):
            for i, name in enumerate(inner.input):
                if name in mapping:
                    inner.input[i] = mapping[name]
