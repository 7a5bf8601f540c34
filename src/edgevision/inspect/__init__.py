"""What is inside a model file: tensors, parameters, MACs, ops, weight precision, largest layers.

>>> from edgevision.inspect import inspect_model, diff_models
>>> report = inspect_model("nanodet-m")                       # doctest: +SKIP
>>> report.precision["fp32"]["elements"]                      # doctest: +SKIP
>>> diff_models("model.onnx", "model-int8.onnx").ops_changed  # doctest: +SKIP

ONNX files are read with ``onnx`` (shape inference for MACs); OpenVINO IR with OpenVINO
and ``.tflite`` with LiteRT give ops, tensors and weight precision (MACs are counted on
ONNX graphs only). MACs of a model with a dynamic input size are counted at
``input_size`` (width, height; 640x640 by default) and the report says which dimensions
were assumed (``ModelReport.counted_at``). Nodes inside Loop/If/Scan bodies are counted
and listed under their body's path (``ModelReport.subgraphs``). Zoo names inspect the model's ONNX file (PyTorch families: their
export, random weights unless ``weights`` is given).
"""

from __future__ import annotations

import html
import logging
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgevision.checks import GRAPH, output_file
from edgevision.errors import EdgevisionError
from edgevision.files import write_atomic
from edgevision.inspect.graph import CountedAt
from edgevision.types import TensorSpec
from edgevision.zoo.assemble import resolve_model
from edgevision.zoo.pull import model_file
from edgevision.zoo.pytorch import export_torch_model, is_pytorch_family

logger = logging.getLogger(__name__)

TOP_LAYERS = 10


@dataclass
class Layer:
    """One compute layer: its name, op type, weight elements, MACs and the body it is in ("" for the main graph)."""

    name: str
    op: str
    params: int
    macs: int
    graph: str = ""  # e.g. "nms/body" for a node inside the body of the Loop named nms


@dataclass
class ModelReport:
    """The facts ``edgevision inspect`` prints about one model file."""

    path: Path
    format: str  # onnx, openvino, tflite
    size_bytes: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    params: int
    macs: int | None
    ops: Counter
    precision: dict[str, dict[str, int]]  # fp32/fp16/int8... -> tensors, elements, bytes
    layers: list[Layer] = field(default_factory=list)  # largest first
    node_names: set[str] = field(default_factory=set)
    counted_at: CountedAt | None = None  # input shapes MACs were counted at, dimensions assumed (ONNX only)
    subgraphs: dict[str, Counter] = field(default_factory=dict)  # body path -> op histogram of that body

    def to_dict(self) -> dict:
        """The facts as JSON-ready data (what ``edgevision inspect`` shows)."""
        return {
            "file": str(self.path),
            "format": self.format,
            "size_bytes": self.size_bytes,
            "params": self.params,
            "macs": self.macs,
            "macs_counted_at": self.counted_at.to_dict() if self.counted_at else None,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "nodes": sum(self.ops.values()),
            "ops": dict(self.ops.most_common()),
            "precision": self.precision,
            "largest_layers": [asdict(layer) for layer in self.layers],
            "subgraphs": {path: dict(ops.most_common()) for path, ops in self.subgraphs.items()},
        }

    def side(self) -> dict:
        """File, format, size, parameters and node count: one side of a diff."""
        return {
            "file": str(self.path),
            "format": self.format,
            "size_bytes": self.size_bytes,
            "params": self.params,
            "nodes": sum(self.ops.values()),
        }


def resolve_path(model: str, *, weights: Path | None = None) -> Path:
    """A model file for ``model``: the file itself, or a zoo model's ONNX file."""
    target = resolve_model(model)
    if isinstance(target, Path):
        return target
    if is_pytorch_family(target):
        return export_torch_model(target, weights=weights, random_weights=weights is None)
    return model_file(target.name, "onnx" if "onnx" in target.files else next(iter(target.files)))


def parse_input_size(text: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"640x480"`` as (640, 480): width, height.

    >>> parse_input_size("320x240"), parse_input_size(None)
    ((320, 240), None)
    """
    if text is None or isinstance(text, tuple):
        return text
    found = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not found or 0 in (int(found[1]), int(found[2])):
        raise EdgevisionError(f"--input-size must be WIDTHxHEIGHT in pixels, such as 640x480, not '{text}'.")
    return int(found[1]), int(found[2])


def inspect_model(
    model: str | Path, *, weights: Path | None = None, input_size: str | tuple[int, int] | None = None
) -> ModelReport:
    """The report of a model file or zoo model.

    ``input_size`` (width, height, or ``"WxH"``) sets the dynamic height and width MACs are
    counted at; dimensions fixed in the file are kept.
    """
    size = parse_input_size(input_size)
    path = resolve_path(str(model), weights=weights)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        size_from = "--input-size" if size else ""
        if size is None and Path(model).is_file():
            size, size_from = _card_input_size(path)
        report = _onnx_report(path, input_size=size)
        if report.counted_at is not None:
            report.counted_at.size_from = size_from
        return report
    if suffix == ".xml":
        return _openvino_report(path)
    if suffix == ".tflite":
        return _tflite_report(path)
    raise EdgevisionError(f"cannot inspect {path.name}: give an .onnx, .xml (OpenVINO) or .tflite file, or a zoo name.")


def _card_input_size(path: Path) -> tuple[tuple[int, int] | None, str]:
    """The input size the model's card (given beside it, inside it, or recognised) feeds it."""
    from edgevision.zoo.assemble import file_decoding
    from edgevision.zoo.info import onnx_summary

    inputs = onnx_summary(path)[1]
    if not inputs or all(d is not None for d in inputs[0].shape[1:]):
        return None, ""
    try:
        decoding = file_decoding(path)
    except EdgevisionError:
        return None, ""
    card = getattr(decoding.processor, "card", None)
    if card is None or card.input_size is None:
        return None, ""
    return tuple(card.input_size), f"its card ({card.decoder} decoder)"


def _file_bytes(path: Path) -> int:
    from edgevision.compare import model_bytes

    return model_bytes(path)


def _onnx_report(path: Path, *, input_size: tuple[int, int] | None = None) -> ModelReport:
    from edgevision.inspect.graph import (
        load_onnx_at,
        node_parameters,
        onnx_macs,
        op_histogram,
        parameter_count,
        qualified_name,
        subgraph_ops,
        walk_nodes,
        weight_precision,
    )
    from edgevision.zoo.info import onnx_summary

    model, counted_at = load_onnx_at(path, input_size=input_size)
    if counted_at.assumed:
        logger.info("MACs counted at %s", counted_at.text())
    _, inputs, outputs = onnx_summary(path)
    macs, params = onnx_macs(model), node_parameters(model)
    nodes = {qualified_name(p, n): (p, n.op_type) for p, n in walk_nodes(model.graph)}
    layers = [
        Layer(name, nodes[name][1], params.get(name, 0), macs.get(name, 0), nodes[name][0])
        for name in set(macs) | set(params)
    ]
    layers.sort(key=lambda layer: (-layer.params, -layer.macs))
    return ModelReport(
        path,
        "onnx",
        _file_bytes(path),
        inputs,
        outputs,
        parameter_count(model),
        sum(macs.values()),
        op_histogram(model),
        weight_precision(model),
        layers[:TOP_LAYERS],
        set(nodes),
        counted_at,
        subgraph_ops(model),
    )


def _openvino_report(path: Path) -> ModelReport:
    from edgevision.modelfiles import read_openvino

    model = read_openvino(path)
    precision: dict[str, dict[str, int]] = {}
    layers = []
    for op in model.get_ordered_ops():
        if op.get_type_name() == "Constant":
            kind = _ov_precision(op.get_element_type().get_type_name())
            elements = int(np.prod(list(op.get_output_shape(0)), dtype=np.int64))
            _add(precision, kind, elements, elements * op.get_element_type().size)
            if elements > 1:
                layers.append(Layer(op.get_friendly_name(), f"Constant {kind}", elements, 0))
    ops = Counter(op.get_type_name() for op in model.get_ordered_ops())
    specs = lambda ports: [
        TensorSpec(
            p.get_any_name(),
            tuple(d.get_length() if d.is_static else None for d in p.get_partial_shape()),
            np.dtype(p.get_element_type().to_dtype()).name,
        )
        for p in ports
    ]  # noqa: E731
    layers.sort(key=lambda layer: -layer.params)
    return ModelReport(
        path,
        "openvino",
        _file_bytes(path),
        specs(model.inputs),
        specs(model.outputs),
        _weights_total(precision),
        None,
        ops,
        precision,
        layers[:TOP_LAYERS],
        {op.get_friendly_name() for op in model.get_ordered_ops()},
    )


def _ov_precision(element_type: str) -> str:
    names = {
        "f32": "fp32",
        "f16": "fp16",
        "bf16": "bf16",
        "i8": "int8",
        "u8": "int8",
        "i32": "int32",
        "i64": "int64",
        "u4": "int4",
        "i4": "int4",
        "boolean": "bool",
    }
    return names.get(element_type, element_type)


def _add(precision: dict, kind: str, elements: int, nbytes: int) -> None:
    entry = precision.setdefault(kind, {"tensors": 0, "elements": 0, "bytes": 0})
    entry["tensors"] += 1
    entry["elements"] += elements
    entry["bytes"] += int(nbytes)


def _weights_total(precision: dict) -> int:
    return sum(v["elements"] for k, v in precision.items() if k not in ("int64", "bool", "fp64"))


def _tflite_report(path: Path) -> ModelReport:
    from edgevision.backends.litert import tensor_spec
    from edgevision.modelfiles import open_tflite

    interpreter = open_tflite(path)
    ops = interpreter._get_ops_details()  # the only API listing a model's ops
    produced = {t for op in ops for t in op["outputs"]}
    graph_inputs = {d["index"] for d in interpreter.get_input_details()}
    constant = {t for op in ops for t in op["inputs"] if t >= 0 and t not in produced and t not in graph_inputs}
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    precision: dict[str, dict[str, int]] = {}
    layers = []
    for index in constant:
        d = details[index]
        elements = int(np.prod(d["shape"], dtype=np.int64)) if len(d["shape"]) else 1
        kind = {"float32": "fp32", "float16": "fp16", "int8": "int8", "uint8": "int8"}.get(
            np.dtype(d["dtype"]).name, np.dtype(d["dtype"]).name
        )
        _add(precision, kind, elements, elements * np.dtype(d["dtype"]).itemsize)
        if elements > 1:
            layers.append(Layer(d["name"], f"tensor {kind}", elements, 0))
    layers.sort(key=lambda layer: -layer.params)
    return ModelReport(
        path,
        "tflite",
        _file_bytes(path),
        [tensor_spec(d) for d in interpreter.get_input_details()],
        [tensor_spec(d) for d in interpreter.get_output_details()],
        _weights_total(precision),
        None,
        Counter(op["op_name"] for op in ops),
        precision,
        layers[:TOP_LAYERS],
        {f"{op['op_name']}:{op['index']}" for op in ops},
    )


# ----------------------------------------------------------------------------- diff


@dataclass
class ModelDiff:
    """What changed from model ``a`` to model ``b``."""

    a: ModelReport
    b: ModelReport
    ops: list[tuple[str, int, int]]  # (op type, count in a, count in b) for every op type
    precision: list[tuple[str, int, int]]  # (precision, weight elements in a, in b)
    added: list[str]  # node names only in b
    removed: list[str]  # node names only in a

    @property
    def size_ratio(self) -> float:
        return self.b.size_bytes / max(self.a.size_bytes, 1)

    @property
    def ops_changed(self) -> list[tuple[str, int, int]]:
        return [row for row in self.ops if row[1] != row[2]]

    def to_dict(self) -> dict:
        """What changed as JSON-ready data (node names in full)."""
        return {
            "from": self.a.side(),
            "to": self.b.side(),
            "size_ratio": self.size_ratio,
            "ops": [{"op": op, "from": a, "to": b} for op, a, b in self.ops],
            "precision": [{"precision": kind, "from": a, "to": b} for kind, a, b in self.precision],
            "added": self.added,
            "removed": self.removed,
        }


def diff_models(a: str | Path, b: str | Path) -> ModelDiff:
    """Op histogram, weight precision, size and node differences between two models."""
    ra, rb = inspect_model(a), inspect_model(b)
    ops = sorted(set(ra.ops) | set(rb.ops), key=lambda op: (-(ra.ops[op] + rb.ops[op]), op))
    kinds = sorted(set(ra.precision) | set(rb.precision))
    elements = lambda r, k: r.precision.get(k, {}).get("elements", 0)  # noqa: E731
    return ModelDiff(
        ra,
        rb,
        [(op, ra.ops[op], rb.ops[op]) for op in ops],
        [(k, elements(ra, k), elements(rb, k)) for k in kinds],
        sorted(rb.node_names - ra.node_names),
        sorted(ra.node_names - rb.node_names),
    )


# ----------------------------------------------------------------------------- graph


def check_graph(output: Path) -> Path:
    """Raise, before any work, unless ``output`` is an ``.html`` or ``.svg`` file that can be written."""
    return output_file(output, suffixes=GRAPH, what="--graph")


def write_graph(
    model: str | Path,
    output: Path,
    *,
    weights: Path | None = None,
    bodies: bool = True,
    input_size: str | tuple[int, int] | None = None,
) -> Path:
    """Draw an ONNX model's graph to ``output``: ``.svg``, or ``.html`` with the SVG inline.

    With ``bodies``, the bodies of Loop, If and Scan nodes are drawn in boxes beside them.
    Tensor shapes are those at ``input_size`` (see ``inspect_model``).
    """
    from edgevision.inspect.graph import load_onnx_at, render_svg, to_dot

    check_graph(output)
    size = parse_input_size(input_size)
    path = resolve_path(str(model), weights=weights)
    if path.suffix.lower() != ".onnx":
        raise EdgevisionError(f"--graph draws ONNX graphs; {path.name} is not ONNX (inspect its source .onnx instead).")
    svg = render_svg(to_dot(load_onnx_at(path, input_size=size)[0], bodies=bodies))
    page = svg if output.suffix.lower() == ".svg" else graph_html(inspect_model(path, input_size=size), svg)
    write_atomic(output, page.encode())
    return output


def graph_html(report: ModelReport, svg: str) -> str:
    """A stand-alone page: the model's key facts above its graph drawing."""
    esc = html.escape
    ops = ", ".join(f"{op} {n}" for op, n in report.ops.most_common())
    facts = [
        f"{report.size_bytes / 1e6:.2f} MB",
        f"{report.params / 1e6:.3f} M parameters",
        f"{report.macs / 1e9:.3f} GMACs" if report.macs else "",
        f"at {report.counted_at.text()}" if report.counted_at and report.counted_at.assumed else "",
        f"{sum(report.ops.values())} nodes",
    ]
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(report.path.name)}</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:1.5em}svg{max-width:none}</style></head><body>"
        f"<h1>{esc(report.path.name)}</h1><p>{esc(' · '.join(f for f in facts if f))}</p><p>{esc(ops)}</p>"
        f"<div>{svg}</div></body></html>"
    )


__all__ = [
    "CountedAt",
    "ModelReport",
    "ModelDiff",
    "Layer",
    "check_graph",
    "inspect_model",
    "diff_models",
    "parse_input_size",
    "write_graph",
]
