"""TF.js graph model -> ONNX, refused unless ONNX Runtime reproduces TensorFlow's numbers.

>>> from edgevision.conversion.tfjs import tfjs_to_onnx
>>> tfjs_to_onnx(Path("nanodet.json"), Path("model.onnx"))  # doctest: +SKIP

The steps: read ``model.json`` and its ``.bin`` shards into a TensorFlow ``GraphDef``,
rewrite the few ops only TF.js knows, convert with tf2onnx, simplify with onnxslim, fold
TF's "SAME" max-pool padding into the ONNX MaxPool, and compare outputs with TensorFlow.

The ``tensorflowjs`` package would do the first step, but its pins downgrade TensorFlow and
numpy, so the graph model is read here: the format is a ``GraphDef`` written as protobuf
JSON with the constants' values moved into little-endian binary shards described by the
``weightsManifest``.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import time
from pathlib import Path

import numpy as np

from edgevision.compare import check_parity
from edgevision.errors import EdgevisionError, MissingExtraError, cause
from edgevision.files import write_atomic

logger = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-4

_TFJS_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}
_QUANTIZED_DTYPES = {"uint8": np.uint8, "uint16": np.uint16, "float16": np.float16}
# Ops that TF.js fuses (or names differently from TensorFlow) and the plain op they start from.
_FUSED_BASE_OPS = {
    "_FusedConv2D": "Conv2D",
    "FusedDepthwiseConv2dNative": "DepthwiseConv2dNative",
    "_FusedDepthwiseConv2dNative": "DepthwiseConv2dNative",
    "_FusedMatMul": "MatMul",
}
_BASE_OP_ATTRS = {
    "Conv2D": ("T", "strides", "padding", "explicit_paddings", "data_format", "dilations", "use_cudnn_on_gpu"),
    "DepthwiseConv2dNative": ("T", "strides", "padding", "explicit_paddings", "data_format", "dilations"),
    "MatMul": ("T", "transpose_a", "transpose_b"),
}
_ACTIVATIONS = ("Relu", "Relu6", "Elu", "Sigmoid", "Tanh", "LeakyRelu")
_INT32 = {"type": "DT_INT32"}


def tfjs_to_onnx(model_json: Path, out_onnx: Path, *, opset: int = 13, sample: np.ndarray | None = None) -> None:
    """Convert the TF.js graph model ``model_json`` (weight shards beside it) to ``out_onnx``.

    ``sample`` is the input used for the parity check (a synthetic image when None); the
    file is written only when every output matches TensorFlow's within ``PARITY_TOLERANCE``.
    """
    tf, tf2onnx = _import_converters()
    start = time.perf_counter()
    model_json = Path(model_json)
    model = _read_json(model_json)
    graph_def = build_graph_def(model, read_weights(model, model_json.parent))
    inputs, outputs = signature_names(model)
    onnx_model = _run_tf2onnx(tf2onnx, graph_def, inputs, outputs, opset)
    onnx_model = _simplify(onnx_model)
    folded = fold_maxpool_pads(onnx_model)
    feeds = _sample_feeds(graph_def, inputs, sample)
    expected = _run_tensorflow(tf, graph_def, feeds, outputs)
    got = _run_onnx(onnx_model, feeds, outputs)
    check_parity(
        dict(zip(outputs, expected)), dict(zip(outputs, got)), tolerance=PARITY_TOLERANCE, reference="TensorFlow"
    )
    write_atomic(Path(out_onnx), onnx_model.SerializeToString())
    logger.info("%s -> %s in %.1f s (%d pads folded)", model_json.name, out_onnx, time.perf_counter() - start, folded)


def _import_converters():
    from edgevision.conversion.tflite import import_tf2onnx

    tf2onnx = import_tf2onnx()
    try:
        import tensorflow as tf
    except ImportError:
        raise MissingExtraError("tensorflow", "convert") from None
    return tf, tf2onnx


def _read_json(path: Path) -> dict:
    try:
        model = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EdgevisionError(f"cannot read TF.js model {path}: {exc}.") from None
    if "modelTopology" not in model or "weightsManifest" not in model:
        raise EdgevisionError(f"{path} is not a TF.js graph model (no modelTopology/weightsManifest).")
    return model


# ----------------------------------------------------------------------------- weights


def read_weights(model: dict, folder: Path) -> dict[str, np.ndarray]:
    """Every constant of a TF.js model, dequantized, by node name."""
    weights: dict[str, np.ndarray] = {}
    for group in model["weightsManifest"]:
        buffer = b"".join(_read_shard(folder / path) for path in group["paths"])
        offset = 0
        for entry in group["weights"]:
            array, offset = _decode_weight(entry, buffer, offset)
            weights[entry["name"]] = array
        if offset != len(buffer):
            raise EdgevisionError(f"weight shards {group['paths']} hold {len(buffer)} bytes, expected {offset}.")
    return weights


def _read_shard(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        raise EdgevisionError(f"weight shard {path} is missing; keep the .bin files beside model.json.") from None


def _decode_weight(entry: dict, buffer: bytes, offset: int) -> tuple[np.ndarray, int]:
    """One weight from ``buffer`` at ``offset``; returns it and the offset after it."""
    shape = tuple(int(d) for d in entry["shape"])
    quant = entry.get("quantization")
    stored = quant["dtype"] if quant else entry["dtype"]
    np_dtype = _QUANTIZED_DTYPES.get(stored) if quant else _TFJS_DTYPES.get(stored)
    if np_dtype is None:
        raise EdgevisionError(f"weight {entry['name']} has dtype {stored}, which this converter does not read.")
    count = int(np.prod(shape))
    end = offset + count * np.dtype(np_dtype).itemsize
    if end > len(buffer):
        raise EdgevisionError(f"weight shards end before weight {entry['name']}; the .bin file is truncated.")
    raw = np.frombuffer(buffer, dtype=np.dtype(np_dtype).newbyteorder("<"), count=count, offset=offset)
    return _dequantize(raw, entry, quant).reshape(shape), end


def _dequantize(raw: np.ndarray, entry: dict, quant: dict | None) -> np.ndarray:
    if quant is None:
        return raw.astype(raw.dtype.newbyteorder("="))
    if quant["dtype"] == "float16":
        values = raw.astype(np.float32)
    else:  # affine uint8/uint16: value = q * scale + min
        values = raw.astype(np.float32) * np.float32(quant["scale"]) + np.float32(quant["min"])
    if entry["dtype"] == "int32":
        return np.round(values).astype(np.int32)
    return values


# ----------------------------------------------------------------------------- graph


def split_fused_ops(nodes: list[dict]) -> list[dict]:
    """Replace TF.js fused conv/matmul nodes by plain TensorFlow ops, in graph-JSON form.

    ``_FusedConv2D(x, w, b)`` with ``fused_ops=[BiasAdd, Relu6]`` becomes ``Conv2D`` ->
    ``BiasAdd`` -> ``Relu6``; the last node keeps the original name so consumers are
    unchanged. TF.js invents ``FusedDepthwiseConv2dNative``, which no TensorFlow build
    runs, and tf2onnx has no handler for any of them, so this rewrite is done by hand.
    """
    out: list[dict] = []
    for node in nodes:
        if node.get("op") in _FUSED_BASE_OPS:
            out.extend(_split_fused(node))
        elif node.get("op") == "TopKV2":
            out.append(_with_topk_attrs(node))
        else:
            out.append(node)
    return out


def _fused_ops(node: dict) -> list[str]:
    encoded = node.get("attr", {}).get("fused_ops", {}).get("list", {}).get("s", [])
    return [base64.b64decode(s).decode() for s in encoded]


def _split_fused(node: dict) -> list[dict]:
    ops = _fused_ops(node)
    attr = node.get("attr", {})
    base_op = _FUSED_BASE_OPS[node["op"]]
    name, inputs = node["name"], node["input"]
    if ops[:1] != ["BiasAdd"] or len(ops) > 2 or (len(ops) == 2 and ops[1] not in _ACTIVATIONS):
        raise EdgevisionError(f"node {name} fuses {ops}; only BiasAdd plus one of {_ACTIVATIONS} is supported.")
    if len(inputs) < 3:
        raise EdgevisionError(f"fused node {name} has no bias input.")
    base_attr = {k: v for k, v in attr.items() if k in _BASE_OP_ATTRS[base_op]}
    base = _node(f"{name}/{base_op}", base_op, inputs[:2], base_attr)
    bias_attr = {"T": attr.get("T", {"type": "DT_FLOAT"})}
    if base_op != "MatMul":
        bias_attr["data_format"] = attr.get("data_format", {"s": base64.b64encode(b"NHWC").decode()})
    chain = [base, _node(f"{name}/BiasAdd", "BiasAdd", [base["name"], inputs[2]], bias_attr)]
    if len(ops) == 2:
        chain.append(_activation_node(f"{name}/{ops[1]}", ops[1], chain[-1]["name"], attr))
    chain[-1]["name"] = name
    return chain


def _activation_node(name: str, op: str, source: str, fused_attr: dict) -> dict:
    attr = {"T": fused_attr.get("T", {"type": "DT_FLOAT"})}
    if op == "LeakyRelu":
        attr["alpha"] = fused_attr.get("leakyrelu_alpha", {"f": 0.2})
    return _node(name, op, [source], attr)


def _node(name: str, op: str, inputs: list[str], attr: dict) -> dict:
    return {"name": name, "op": op, "input": list(inputs), "attr": copy.deepcopy(attr)}


def _with_topk_attrs(node: dict) -> dict:
    # TF.js drops attrs that have defaults; tf2onnx reads these two without a fallback.
    node = copy.deepcopy(node)
    attr = node.setdefault("attr", {})
    attr.setdefault("Tk", dict(_INT32))
    attr.setdefault("index_type", dict(_INT32))
    return node


def build_graph_def(model: dict, weights: dict[str, np.ndarray]):
    """A TensorFlow ``GraphDef`` of the TF.js model with its constants filled in."""
    import tensorflow as tf
    from google.protobuf import json_format

    topology = dict(model["modelTopology"])
    topology["node"] = split_fused_ops(topology.get("node", []))
    graph_def = json_format.ParseDict(topology, tf.compat.v1.GraphDef(), ignore_unknown_fields=True)
    for node in graph_def.node:
        if node.op == "Const" and node.name in weights:
            dtype = tf.as_dtype(node.attr["dtype"].type).as_numpy_dtype
            value = weights[node.name].astype(dtype)  # TF.js stores int64 constants as int32
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value, shape=value.shape))
    return graph_def


def signature_names(model: dict) -> tuple[list[str], list[str]]:
    """Input and output tensor names (``name:0``) from the model's signature or topology."""
    signature = model.get("signature") or {}
    inputs = [v.get("name", k) for k, v in signature.get("inputs", {}).items()]
    outputs = [v.get("name", k) for k, v in signature.get("outputs", {}).items()]
    nodes = model["modelTopology"].get("node", [])
    if not inputs:
        inputs = [f"{n['name']}:0" for n in nodes if n["op"] == "Placeholder"]
    if not outputs:
        consumed = {i.split(":")[0].lstrip("^") for n in nodes for i in n.get("input", [])}
        outputs = [f"{n['name']}:0" for n in nodes if n["name"] not in consumed and n["op"] != "Const"]
    return [_tensor_name(n) for n in inputs], [_tensor_name(n) for n in outputs]


def _tensor_name(name: str) -> str:
    return name if ":" in name else f"{name}:0"


# ----------------------------------------------------------------------------- onnx


def _run_tf2onnx(tf2onnx, graph_def, inputs: list[str], outputs: list[str], opset: int):
    try:
        model, _ = tf2onnx.convert.from_graph_def(graph_def, input_names=inputs, output_names=outputs, opset=opset)
    except Exception as exc:  # tf2onnx raises bare exceptions of many kinds
        raise EdgevisionError(f"tf2onnx could not convert the model: {cause(exc)}.") from None
    return model


def _simplify(model):
    try:
        import onnxslim
    except ImportError:
        raise MissingExtraError("onnxslim", "convert") from None
    return onnxslim.slim(model)


def fold_maxpool_pads(model) -> int:
    """Fold ``Pad(value=-inf) -> MaxPool`` into the MaxPool's own ``pads``; returns the count.

    TensorFlow's "SAME" max-pool arrives as an explicit -inf Pad. The outputs are the same
    either way, but the -inf constant gives int8 calibrators NaN scales. No converter or
    simplifier does this rewrite, so it is done here.
    """
    graph = model.graph
    consumers = _consumers(graph)
    folded = 0
    for pad in [n for n in graph.node if n.op_type == "Pad"]:
        pools = consumers.get(pad.output[0], [])
        spatial = _minus_inf_spatial_pads(graph, pad)
        if spatial is None or not pools or not all(_plain_maxpool(p) for p in pools):
            continue
        for pool in pools:
            _set_pool_pads(pool, pad.input[0], spatial)
        graph.node.remove(pad)
        folded += 1
    _drop_unused_initializers(graph)
    return folded


def _drop_unused_initializers(graph) -> None:
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)


def _consumers(graph) -> dict[str, list]:
    out: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            out.setdefault(name, []).append(node)
    return out


def _constant(graph, name: str) -> np.ndarray | None:
    from onnx import numpy_helper

    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(node.attribute[0].t)
    return None


def _minus_inf_spatial_pads(graph, pad) -> list[int] | None:
    """The [top, left, bottom, right] pads of an NCHW -inf Pad, or None for any other Pad."""
    mode = next((a.s for a in pad.attribute if a.name == "mode"), b"constant")
    if mode != b"constant" or len(pad.input) < 3 or pad.input[2] == "" or len(pad.input) > 3:
        return None
    pads, value = _constant(graph, pad.input[1]), _constant(graph, pad.input[2])
    if pads is None or value is None or pads.size != 8 or not np.all(value.reshape(-1) <= -3.0e38):
        return None
    if pads[[0, 1, 4, 5]].any() or (pads < 0).any():
        return None
    return [int(v) for v in pads[[2, 3, 6, 7]]]


def _plain_maxpool(node) -> bool:
    attrs = {a.name: a for a in node.attribute}
    auto_pad = attrs["auto_pad"].s if "auto_pad" in attrs else b"NOTSET"
    pads = list(attrs["pads"].ints) if "pads" in attrs else []
    return node.op_type == "MaxPool" and auto_pad == b"NOTSET" and not any(pads)


def _set_pool_pads(pool, source: str, spatial: list[int]) -> None:
    from onnx import helper

    pool.input[0] = source
    kept = [a for a in pool.attribute if a.name != "pads"]
    del pool.attribute[:]
    pool.attribute.extend(kept + [helper.make_attribute("pads", spatial)])


# ----------------------------------------------------------------------------- parity


def _sample_feeds(graph_def, inputs: list[str], sample: np.ndarray | None) -> dict[str, np.ndarray]:
    if sample is not None:
        if len(inputs) != 1:
            raise EdgevisionError(f"the model has inputs {inputs}; a single sample cannot feed them.")
        return {inputs[0]: sample}
    placeholders = {n.name: n for n in graph_def.node if n.op == "Placeholder"}
    return {name: _synthetic_input(placeholders[name.split(":")[0]]) for name in inputs}


def _synthetic_input(placeholder) -> np.ndarray:
    """A smooth, seeded image-like tensor that fits ``placeholder`` (NHWC or NCHW)."""
    import cv2
    import tensorflow as tf

    dims = [d.size if d.size > 0 else 256 for d in placeholder.attr["shape"].shape.dim]
    dtype = tf.as_dtype(placeholder.attr["dtype"].type).as_numpy_dtype
    if len(dims) != 4 or 3 not in (dims[1], dims[3]):
        return np.random.default_rng(0).random(dims).astype(dtype)
    nchw = dims[1] == 3 and dims[3] != 3
    h, w = (dims[2], dims[3]) if nchw else (dims[1], dims[2])
    coarse = np.random.default_rng(0).integers(0, 256, (8, 8, 3)).astype(np.uint8)
    image = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    image = image / 255.0 if np.dtype(dtype).kind == "f" else image
    image = image.transpose(2, 0, 1) if nchw else image
    return np.broadcast_to(image, dims).astype(dtype)


def _run_tensorflow(tf, graph_def, feeds: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:
        return session.run(outputs, feed_dict=feeds)


def _run_onnx(model, feeds: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(outputs, dict(zip(names, feeds.values())))
