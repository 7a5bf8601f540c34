"""ONNX -> TFLite: onnx2tf writes a TensorFlow SavedModel, TensorFlow's converter the ``.tflite``.

>>> from edgevision.conversion.onnx_tflite import TfliteOptions, onnx_to_tflite
>>> onnx_to_tflite(Path("model.onnx"), Path("model.tflite"), options=TfliteOptions())  # doctest: +SKIP

What the produced file keeps of the source:

* Inputs keep the ONNX layout and dtype (onnx2tf's ``-kat``: an NCHW input stays NCHW), so
  the model family's pre-processing feeds it unchanged.
* Outputs keep the ONNX layout too: onnx2tf makes 4-D outputs channels-last, and a final
  transpose restores them.
* Input and output tensors carry the ONNX names again (onnx2tf calls outputs
  ``PartitionedCall:N`` in no fixed order); the SavedModel's outputs are matched to the ONNX
  outputs in order, named in the converter's signature and checked by shape.
* Inputs and outputs stay float32 at every precision (int8 quantizes inside the graph).
* int8 can keep named ONNX nodes in float (``TfliteOptions.exclude``): onnx2tf's log says
  which TensorFlow op computes each ONNX node, the ``.tflite`` tensors keep those op names,
  and TensorFlow's ``QuantizationDebugger`` quantizes with those ops denylisted. The model
  is calibrated once (``Int8Calibrator``) and re-quantized per exclusion list in a second.

onnx2tf runs in a child process: its pins conflict with this package's, it ends the process
on some errors, and it reads a calibration sample from its working folder (fetched from the
internet when absent, so a synthetic one is placed there). It needs the ``onnxsim`` command
on ``PATH``; without it onnx2tf exits 0 with a numerically wrong model, so its absence is an
error here, and every produced file is checked against ONNX Runtime by the caller.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgevision.errors import EdgevisionError, MissingExtraError, UnsupportedOpsError, cause

logger = logging.getLogger(__name__)

EXTRA = "litert-convert"
PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8")
ONNX2TF_TIMEOUT_S = 3600
# onnx2tf loads this file from its working folder for its own checks and default calibration.
ONNX2TF_SAMPLE = "calibration_image_sample_data_20x128x128x3_float32.npy"
# Part of the SavedModel cache key: v2 added the ONNX node -> TF op map (``SavedModel.layers``),
# v3 the int32-safe edge padding.
CACHE_FORMAT = "v3"
# "To the end" of an edge-padding Slice: TFLite runs slices in int32, and ONNX's usual 2**62
# wrapped to an empty slice at run time (YOLOX's 5x5 SPP pool came out 11 rows, not 13,
# though the converter's static shapes were right).
INT32_MAX = 2**31 - 1

Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class TfliteOptions:
    """Precision and calibration of one ONNX -> TFLite conversion."""

    precision: str = "fp32"  # fp32, fp16, int8-dynamic (weights only), int8 (calibrated)
    per_channel: bool = True
    calibration: Sequence[Feeds] = ()  # ONNX input name -> tensor, pre-processed as at inference
    exclude: tuple[str, ...] = ()  # ONNX node names kept in float (int8 only)


@dataclass
class SavedModel:
    """A SavedModel written by onnx2tf and how its tensor names map to the ONNX ones."""

    folder: Path
    inputs: dict[str, str]  # plain name -> ONNX input name
    outputs: dict[str, str]  # plain name -> ONNX output name
    output_shapes: dict[str, tuple[int, ...]]  # plain output name -> static shape
    # onnx2tf's node name -> names of the TF ops computing its outputs (from onnx2tf's log)
    layers: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> str:
        shapes = {k: list(v) for k, v in self.output_shapes.items()}
        return json.dumps(
            {"inputs": self.inputs, "outputs": self.outputs, "output_shapes": shapes, "layers": self.layers}
        )

    @classmethod
    def from_json(cls, folder: Path, text: str) -> SavedModel:
        data = json.loads(text)
        shapes = {k: tuple(v) for k, v in data["output_shapes"].items()}
        return cls(folder, data["inputs"], data["outputs"], shapes, data.get("layers", {}))


# ----------------------------------------------------------------------------- availability


def onnx2tf_available() -> bool:
    return importlib.util.find_spec("onnx2tf") is not None


def _child_env() -> dict[str, str]:
    """The environment of the onnx2tf process: this interpreter's scripts first on PATH."""
    scripts = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": scripts + os.pathsep + os.environ.get("PATH", "")}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("CUDA_VISIBLE_DEVICES", "-1")
    return env


def require_onnx2tf() -> dict[str, str]:
    """The child environment, after checking that onnx2tf and the ``onnxsim`` command exist."""
    if not onnx2tf_available():
        raise EdgevisionError(
            "onnx2tf is not installed; its pins conflict with this package's, so install it apart: "
            "pip install 'edgevision[litert-convert]' && pip install --no-deps onnx2tf==1.29.24 tf-keras==2.21.0."
        )
    env = _child_env()
    if shutil.which("onnxsim", path=env["PATH"]) is None:
        raise MissingExtraError("onnxsim (the command onnx2tf runs)", EXTRA)
    return env


def onnx2tf_ops() -> set[str]:
    """ONNX op types onnx2tf converts: it has one module per op (listed without importing TF)."""
    spec = importlib.util.find_spec("onnx2tf")
    if spec is None or not spec.submodule_search_locations:
        return set()
    folder = Path(next(iter(spec.submodule_search_locations))) / "ops"
    return {p.stem for p in folder.glob("*.py") if not p.stem.startswith("_")}


def unsupported_ops(model) -> list[str]:
    """Op types of ``model`` that onnx2tf has no converter for (custom domains included)."""
    known = onnx2tf_ops()
    ops = {n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}" for n in model.graph.node}
    return sorted(op for op in ops if op not in known)


# ----------------------------------------------------------------------------- ONNX -> SavedModel


def plain_io_names(model) -> tuple[dict[str, str], dict[str, str]]:
    """Rename ``model``'s inputs and outputs in place to ``in_k`` / ``out_k``.

    onnx2tf rewrites names such as ``input_1:0`` and then no longer finds them in its
    options; plain names survive. Returns (inputs, outputs) as plain name -> original name.
    """
    graph = model.graph
    inputs = {f"in_{k}": v.name for k, v in enumerate(graph.input)}
    outputs = {f"out_{k}": v.name for k, v in enumerate(graph.output)}
    rename = {old: new for new, old in (inputs | outputs).items()}
    for value in list(graph.input) + list(graph.output):
        value.name = rename[value.name]
    for node in graph.node:
        node.input[:] = [rename.get(n, n) for n in node.input]
        node.output[:] = [rename.get(n, n) for n in node.output]
    return inputs, outputs


# The op names TensorFlow accepts in a SavedModel (``:`` too: onnx2tf writes it as ``__``).
_TF_NAME = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9_.\\/>:-]*$")


def plain_node_names(model) -> dict[str, str]:
    """Rename in place the nodes whose names TensorFlow refuses as op names; return the
    onnx2tf names of the new names -> the original node names.

    TFLite exports (tf2onnx) name nodes after fused TFLite ops, which join their TF ops with
    ``;`` (``model/re_lu_48/Relu6;model/conv2d_42/Conv2D``); onnx2tf names TF ops and weights
    after the nodes, and TensorFlow then refuses to write the SavedModel. Each character
    outside the accepted set becomes ``_`` (a numbered suffix keeps the names unique).

    >>> import onnx
    >>> m = onnx.helper.make_model(onnx.helper.make_graph(
    ...     [onnx.helper.make_node("Relu", ["x"], ["y"], name="a/Relu;a/Conv2D")], "g", [], []))
    >>> plain_node_names(m), m.graph.node[0].name
    ({'a/Relu_a/Conv2D': 'a/Relu;a/Conv2D'}, 'a/Relu_a/Conv2D')
    """
    taken = {node.name for node in model.graph.node}
    originals: dict[str, str] = {}
    for node in model.graph.node:
        if not node.name or _TF_NAME.match(node.name):
            continue
        base = re.sub(r"[^A-Za-z0-9_./>:-]", "_", node.name)
        base = base if re.match(r"[A-Za-z0-9.]", base) else "n" + base
        new, k = base, 1
        while new in taken:
            new, k = f"{base}_{k}", k + 1
        taken.add(new)
        originals[onnx2tf_name(new)] = node.name
        node.name = new
    return originals


def edge_pad_maxpools(model) -> int:
    """Move each padded MaxPool's padding into edge padding before it; return how many.

    onnx2tf pads a MaxPool with the dtype's lowest value (``PADV2``), and int8 calibration
    then gives that tensor a scale of ~1e36, which wipes out the activations (and XNNPACK
    refuses the op). Repeating the border value is exact for max pooling when every pad is
    smaller than the kernel, dilation is 1 and ``ceil_mode`` is off, which ONNX pooling
    almost always is. The border is repeated with Slice + Concat rather than an edge-mode
    Pad, which onnx2tf turns into MIRROR_PAD ops that XNNPACK does not run. No converter
    offers this rewrite, so it is done here.
    """
    graph, count = model.graph, 0
    for node in [n for n in graph.node if n.op_type == "MaxPool" and _edge_paddable(n)]:
        pads_attr = next(a for a in node.attribute if a.name == "pads")
        pads, rank = list(pads_attr.ints), len(pads_attr.ints) // 2
        name = node.name or node.output[0]
        nodes, inits, tensor = [], [], node.input[0]
        for i in range(rank):
            tensor = _edge_pad_axis(tensor, 2 + i, pads[i], pads[rank + i], f"{name}_edge{i}", nodes, inits)
        at = list(graph.node).index(node)
        for offset, new_node in enumerate(nodes):
            graph.node.insert(at + offset, new_node)
        graph.initializer.extend(inits)
        node.input[0] = tensor
        pads_attr.ints[:] = [0] * len(pads)
        count += 1
    return count


def _edge_pad_axis(tensor: str, axis: int, before: int, after: int, name: str, nodes: list, inits: list) -> str:
    """Append nodes that repeat the first/last slice of ``tensor`` along ``axis``; return the result."""
    from onnx import helper, numpy_helper

    if not before and not after:
        return tensor

    def const(suffix: str, value: int) -> str:
        inits.append(numpy_helper.from_array(np.array([value], dtype=np.int64), f"{name}_{suffix}"))
        return f"{name}_{suffix}"

    axes = const("axis", axis)
    nodes.append(helper.make_node("Slice", [tensor, const("s0", 0), const("e0", 1), axes], [f"{name}_first"]))
    nodes.append(helper.make_node("Slice", [tensor, const("s1", -1), const("e1", INT32_MAX), axes], [f"{name}_last"]))
    parts = [f"{name}_first"] * before + [tensor] + [f"{name}_last"] * after
    nodes.append(helper.make_node("Concat", parts, [f"{name}_out"], name=f"{name}_concat", axis=axis))
    return f"{name}_out"


def _edge_paddable(node) -> bool:
    from onnx import helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    pads = list(attrs.get("pads", []))
    kernel = list(attrs.get("kernel_shape", []))
    plain = attrs.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET") and not attrs.get("ceil_mode", 0)
    undilated = all(d == 1 for d in attrs.get("dilations", [1] * len(kernel)))
    small = all(p < kernel[i % len(kernel)] for i, p in enumerate(pads)) if kernel else False
    return plain and undilated and small and any(pads) and len(node.output) == 1


def _static_shapes(model) -> dict[str, tuple[int, ...]]:
    return {o.name: tuple(d.dim_value for d in o.type.tensor_type.shape.dim) for o in model.graph.output}


def _write_sample(folder: Path) -> None:
    """onnx2tf's calibration sample, made of synthetic images so that it never downloads one."""
    from edgevision.conversion.tflite import synthetic_image

    images = np.stack([np.roll(synthetic_image(128, 128), 9 * k, axis=1) for k in range(20)])
    np.save(folder / ONNX2TF_SAMPLE, images.astype(np.float32))


def onnx_to_saved_model(source: Path, workdir: Path) -> SavedModel:
    """Run onnx2tf on ``source`` in ``workdir``; the SavedModel keeps the ONNX input layout."""
    import onnx

    env = require_onnx2tf()
    model = onnx.load(str(source))
    missing = unsupported_ops(model)
    if missing:
        raise UnsupportedOpsError(
            "litert", missing, f"onnx2tf (ONNX -> TFLite) cannot convert op(s) {', '.join(missing)}."
        )
    shapes = _static_shapes(model)
    if edge_pad_maxpools(model):
        logger.info("onnx2tf: padded max-pools given edge padding (exact, and int8-safe)")
    inputs, outputs = plain_io_names(model)
    originals = plain_node_names(model)
    plain = workdir / "plain.onnx"
    onnx.save(model, str(plain))
    _write_sample(workdir)
    log = _run_onnx2tf(plain, workdir / "saved_model", list(inputs), env)
    layers = {onnx2tf_name(originals.get(k, k)): ops for k, ops in layers_from_log(log).items()}
    return SavedModel(workdir / "saved_model", inputs, outputs, {k: shapes[v] for k, v in outputs.items()}, layers)


def cached_saved_model(source: Path) -> SavedModel:
    """onnx2tf's SavedModel of ``source``, made once per ONNX file hash and onnx2tf version.

    onnx2tf takes about a minute on a small detector; fp16, int8 and every retry of an
    accuracy budget reuse the same SavedModel.
    """
    from importlib import metadata

    from edgevision.files import cache_dir, sha256_file, staging_dir

    version = metadata.version("onnx2tf") if onnx2tf_available() else ""
    key = f"{sha256_file(Path(source))[:16]}-onnx2tf{version}-{CACHE_FORMAT}"
    final = cache_dir("onnx2tf") / key
    if (final / "io.json").exists():
        return SavedModel.from_json(final / "saved_model", (final / "io.json").read_text())
    with staging_dir(final) as tmp:
        saved = onnx_to_saved_model(Path(source), tmp)
        (tmp / "io.json").write_text(saved.to_json())
        # Keep the SavedModel only: not the renamed ONNX, the sample, or onnx2tf's own .tflite files.
        for leftover in [*tmp.glob("*.onnx*"), tmp / ONNX2TF_SAMPLE, *(tmp / "saved_model").glob("*.tflite")]:
            leftover.unlink(missing_ok=True)
    return SavedModel.from_json(final / "saved_model", (final / "io.json").read_text())


def _run_onnx2tf(onnx_path: Path, out: Path, keep_inputs: list[str], env: dict[str, str]) -> str:
    """Run onnx2tf at its default (debug) verbosity and return its log, which maps nodes to TF ops."""
    command = [
        sys.executable,
        "-m",
        "onnx2tf",
        "-i",
        onnx_path.name,
        "-o",
        str(out),
        "-osd",
        "-kat",
        *keep_inputs,
    ]
    logger.info("onnx2tf: converting %s (this takes a while)", onnx_path.name)
    try:
        done = subprocess.run(
            command, cwd=onnx_path.parent, env=env, capture_output=True, text=True, timeout=ONNX2TF_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise EdgevisionError(f"onnx2tf did not finish within {ONNX2TF_TIMEOUT_S} s.") from None
    if done.returncode != 0 or not (out / "saved_model.pb").exists():
        raise EdgevisionError(f"onnx2tf failed: {_last_error(done.stdout + done.stderr)}")
    return done.stdout + done.stderr


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_NODE_LINE = re.compile(r"onnx_op_name: (\S+)")
_TF_OUTPUT_LINE = re.compile(r"\boutput\.\d+\.\S+: name: (\S+?)(?::\d+)? shape:")


def layers_from_log(log: str) -> dict[str, list[str]]:
    """onnx2tf's node name -> the TF ops that compute its outputs, read from onnx2tf's log.

    onnx2tf prints, per ONNX node, ``onnx_op_name: X`` and then ``output.1.output: name:
    tf.math.add_3/Add:0 ...`` for the TF tensors it made; no API returns this map, so the
    log is read here. onnx2tf writes ``:`` in node names as ``__`` (``onnx2tf_name``).

    >>> layers_from_log("INFO: onnx_op_type: Conv onnx_op_name: conv1\\n"
    ...                 "INFO:  output.1.output: name: tf.math.add/Add:0 shape: (1, 8) dtype: f")
    {'conv1': ['tf.math.add/Add']}
    """
    layers: dict[str, list[str]] = {}
    node = None
    for line in _ANSI.sub("", log).splitlines():
        if match := _NODE_LINE.search(line):
            node = match.group(1)
            layers.setdefault(node, [])
        elif node and (match := _TF_OUTPUT_LINE.search(line)):
            layers[node].append(match.group(1))
    return {name: ops for name, ops in layers.items() if ops}


def _last_error(log: str) -> str:
    """The most telling line of onnx2tf's log: its last ERROR line, else the last line."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in log.splitlines() if line.strip()]
    errors = [line for line in lines if "ERROR" in line or "Error" in line]
    return (errors or lines or ["no output"])[-1]


# ----------------------------------------------------------------------------- SavedModel -> TFLite


def _representative(saved: SavedModel, calibration: Sequence[Feeds]):
    """The converter's calibration generator: the ONNX feeds in the function's input order."""

    def generate() -> Iterator[list[np.ndarray]]:
        for feeds in calibration:
            yield [np.asarray(feeds[name]) for name in saved.inputs.values()]

    return generate


def _layout_perm(tf_shape: tuple, onnx_shape: tuple[int, ...]) -> list[int] | None:
    """The transpose that turns onnx2tf's channels-last output back into the ONNX layout.

    >>> _layout_perm((1, 16, 16, 64), (1, 64, 16, 16))
    [0, 3, 1, 2]
    >>> _layout_perm((1, 169, 80), (1, 169, 80)) is None
    True
    """
    tf_shape = tuple(tf_shape)
    if tf_shape == onnx_shape or len(onnx_shape) < 3 or not all(onnx_shape):
        return None
    perm = [0, len(onnx_shape) - 1, *range(1, len(onnx_shape) - 1)]
    if tuple(tf_shape[i] for i in perm) != onnx_shape:
        raise EdgevisionError(f"onnx2tf output of shape {tf_shape} does not match the ONNX shape {onnx_shape}.")
    return perm


def onnx_layout_function(saved: SavedModel):
    """The SavedModel's function with ONNX-named outputs in the ONNX layout; and its owner.

    onnx2tf makes 4-D outputs channels-last; a transpose at the end restores the source's
    layout, so the ``.tflite`` outputs match the ONNX outputs shape for shape.
    """
    import tensorflow as tf

    loaded = tf.saved_model.load(str(saved.folder))
    fn = loaded.signatures["serving_default"]
    specs = fn.structured_input_signature[1]
    keys = sorted(fn.structured_outputs, key=lambda k: int(re.sub(r"\D", "", k) or 0))
    perms = {
        plain: _layout_perm(fn.structured_outputs[key].shape, saved.output_shapes[plain])
        for key, plain in zip(keys, saved.outputs)
    }
    signature = [tf.TensorSpec(specs[n].shape, specs[n].dtype, name=n) for n in saved.inputs]

    @tf.function(input_signature=signature)
    def onnx_layout(*args):
        out = fn(**dict(zip(saved.inputs, args)))
        return {
            plain: tf.transpose(out[key], perms[plain]) if perms[plain] else out[key]
            for key, plain in zip(keys, saved.outputs)
        }

    return onnx_layout.get_concrete_function(), loaded


def tflite_converter(saved: SavedModel, options: TfliteOptions):
    """TensorFlow's converter for ``saved`` set up for ``options.precision``."""
    import tensorflow as tf

    if options.precision not in PRECISIONS:
        raise EdgevisionError(f"TFLite precision must be one of {', '.join(PRECISIONS)}, got {options.precision}.")
    function, owner = onnx_layout_function(saved)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], owner)
    if options.precision != "fp32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if options.precision == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if options.precision == "int8":
        if not options.calibration:
            raise EdgevisionError("int8 TFLite conversion needs calibration images.")
        converter.representative_dataset = _representative(saved, options.calibration)
        # A private switch, but the only one TensorFlow's converter offers for per-tensor weights;
        # the QuantizationDebugger reads it too when it quantizes.
        converter._experimental_disable_per_channel = not options.per_channel
    return converter


def saved_model_to_tflite(
    saved: SavedModel, options: TfliteOptions, *, calibrator: Int8Calibrator | None = None, denylist: Sequence[str] = ()
) -> bytes:
    """TensorFlow's converter at ``options.precision``; float32 inputs and outputs kept.

    int8 goes through ``calibrator`` (a new one when None), which keeps the TFLite ops
    named in ``denylist`` in float.
    """
    try:
        if options.precision == "int8":
            return (calibrator or Int8Calibrator()).quantize(saved, options, denylist)
        return tflite_converter(saved, options).convert()
    except (RuntimeError, ValueError) as exc:  # TensorFlow's converter and calibrator raise these
        raise EdgevisionError(
            f"TensorFlow's TFLite converter failed at {options.precision} ({cause(exc)}); "
            "try another precision or --backend openvino / ort."
        ) from None


class Int8Calibrator:
    """Calibrates a SavedModel once and quantizes it to int8 with any list of ops kept float.

    TensorFlow's ``QuantizationDebugger`` runs the calibration and then quantizes with
    ``denylisted_nodes`` (TFLite output tensor names) left in float; a new list re-runs
    only the quantization, so an accuracy budget's attempts cost seconds, not a calibration
    each. One calibration is kept: that of the last SavedModel, calibration set and
    per-channel setting.
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._debugger = None

    def quantize(self, saved: SavedModel, options: TfliteOptions, denylist: Sequence[str] = ()) -> bytes:
        """int8 ``.tflite`` bytes with the ops named in ``denylist`` kept in float."""
        import tensorflow as tf

        debugger = self.debugger(saved, options)
        if list(debugger.options.denylisted_nodes or []) != list(denylist):
            # ValueError comes after the options are set, when no op is left int8 to verify
            # (every op denylisted): the non-debug model below is still made with them.
            with contextlib.suppress(ValueError):
                debugger.options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(denylist))
        return debugger.get_nondebug_quantized_model()

    def calibrated_model(self, saved: SavedModel, options: TfliteOptions) -> bytes:
        """The calibrated float model (TFLite ops named as in every int8 file made from it)."""
        return self.debugger(saved, options).calibrated_model

    def debugger(self, saved: SavedModel, options: TfliteOptions):
        import tensorflow as tf

        key = (str(saved.folder), options.per_channel, calibration_digest(options.calibration))
        if key != self._key:
            self._debugger, self._key = None, None
            converter = tflite_converter(saved, options)
            self._debugger = tf.lite.experimental.QuantizationDebugger(
                converter=converter,
                debug_dataset=converter.representative_dataset,
                debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=[]),
            )
            self._key = key
        return self._debugger


# ----------------------------------------------------------------------------- per-layer noise


def layer_noise(
    calibrator: Int8Calibrator,
    saved: SavedModel,
    options: TfliteOptions,
    denylist: Sequence[str],
    feeds: Sequence[Feeds],
) -> dict[str, float]:
    """TFLite op output tensor -> relative noise power its int8 op adds, over ``feeds``.

    TensorFlow's ``QuantizationDebugger`` runs a debug model in which every int8 op has a
    float twin fed the same (dequantized) inputs, so the error of each op is its own, not
    that of the ops before it. The noise is ``|float - dequantized|^2 / |float|^2``, the
    measure ``edgevision.quantization.sensitivity`` uses, averaged over ``feeds``.
    """
    import tensorflow as tf

    calibrator.quantize(saved, options, denylist)  # the debugger's model with ``denylist`` float
    debug_model = calibrator.debugger(saved, options).get_debug_quantized_model()
    metrics = {"relative_noise": _relative_noise}
    debugger = tf.lite.experimental.QuantizationDebugger(
        quant_debug_model_content=debug_model,
        debug_dataset=_representative(saved, feeds),
        debug_options=tf.lite.experimental.QuantizationDebugOptions(layer_direct_compare_metrics=metrics),
    )
    debugger.run()
    return {_verified_tensor(name): float(stats["relative_noise"]) for name, stats in debugger.layer_statistics.items()}


def _relative_noise(reference: np.ndarray, quantized: np.ndarray, scale: float, zero_point: int) -> float:
    """``|ref - dequantized|^2 / |ref|^2`` for one op output (0 for an all-zero reference)."""
    ref = np.asarray(reference, dtype=np.float64)
    dequantized = (np.asarray(quantized, dtype=np.float64) - zero_point) * scale
    signal = float(np.sum(ref**2))
    return float(np.sum((ref - dequantized) ** 2)) / signal if signal > 0 else 0.0


def _verified_tensor(name: str) -> str:
    """The op output a NumericVerify tensor checks: ``NumericVerify/<tensor><digit>:<index>`` -> ``<tensor>``.

    TensorFlow's debugger reads these names the same way (``_get_operand_name_and_index``,
    private): the converter appends one digit to the checked tensor's name.

    >>> _verified_tensor("NumericVerify/model/tf.math.add_3/Add1:12")
    'model/tf.math.add_3/Add'
    >>> _verified_tensor("NumericVerify/PartitionedCall:02:50")
    'PartitionedCall:0'
    """
    tensor = name.removeprefix("NumericVerify/").rsplit(":", 1)[0]
    return tensor[:-1] if tensor[-1:].isdigit() else tensor


def calibration_digest(calibration: Sequence[Feeds]) -> str:
    """A hash of the calibration tensors (names, shapes and values)."""
    import hashlib

    digest = hashlib.sha1()
    for feeds in calibration:
        for name in sorted(feeds):
            array = np.ascontiguousarray(feeds[name])
            digest.update(f"{name}{array.shape}{array.dtype}".encode())
            digest.update(array.data)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- ONNX nodes -> TFLite ops


def onnx2tf_name(name: str) -> str:
    """The name onnx2tf gives ONNX node ``name`` (it writes ``:`` as ``__``).

    >>> onnx2tf_name("Conv__146:0")
    'Conv__146__0'
    """
    return name.replace(":", "__")


def tflite_op_outputs(model: bytes) -> list[list[str]]:
    """Output tensor names of every op of a ``.tflite`` model's main graph, in order."""
    from tensorflow.lite.tools import flatbuffer_utils

    graph = flatbuffer_utils.convert_bytearray_to_object(bytearray(model)).subgraphs[0]
    return [[graph.tensors[i].name.decode() for i in op.outputs] for op in graph.operators]


def _components(tensor: str) -> list[str]:
    """A TFLite tensor name's TF op names, without the Keras model scope.

    Fused ops join their TF ops' names with ``;``: ``model_12/tf.math.add_3/Add;model_12/
    tf.nn.convolution_3/convolution;Const_631`` is a Conv2D with its bias add.
    """
    return [part.split("/", 1)[1] for part in tensor.split(";") if "/" in part]


def layer_ops(graph, saved: SavedModel, model: bytes) -> dict[str, list[str]]:
    """ONNX node name -> output tensor names of the TFLite ops that compute it.

    A node maps to the ops whose name carries one of the TF ops onnx2tf made for it (fused
    ops included); a node producing a graph output also maps to the op producing that
    output in the ``.tflite`` (which the converter names after the signature instead). A
    node with no op of its own (folded away, or name-clashing after onnx2tf's renaming) maps
    to nothing.
    """
    op_outputs = tflite_op_outputs(model)
    by_tf_op: dict[str, list[str]] = {}
    for outputs in op_outputs:
        for part in _op_components(outputs):
            by_tf_op.setdefault(part, []).append(outputs[0])
    renamed: dict[str, list[str]] = {}
    for node in graph.node:
        renamed.setdefault(onnx2tf_name(node.name), []).append(node.name)
    mapping = {}
    for node in graph.node:
        if len(renamed[onnx2tf_name(node.name)]) > 1:
            continue
        tf_ops = saved.layers.get(onnx2tf_name(node.name), [])
        mapping[node.name] = _unique(t for op in tf_ops for t in by_tf_op.get(op, []))
    for node_name, tensors in _output_ops(graph, saved, model, op_outputs).items():
        mapping[node_name] = _unique([*mapping.get(node_name, []), *tensors])
    _assign_helper_ops(mapping, model)
    return {name: tensors for name, tensors in mapping.items() if tensors}


def _assign_helper_ops(mapping: dict[str, list[str]], model: bytes) -> None:
    """Give each op onnx2tf added on its own (a layout TRANSPOSE before a Reshape, a PAD before
    a Conv) to the ONNX node whose ops alone consume its outputs; ``mapping`` is updated.

    onnx2tf's log names only the TF op that makes a node's output, so these helpers map to
    no node: kept int8 between float ops, the TRANSPOSE after NanoDet-m's float Sigmoid
    re-quantized every score. Ops are visited from the last, so chains of helpers follow
    their consumer. No converter reports this, so the graph is walked here.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    subgraph = flatbuffer_utils.convert_bytearray_to_object(bytearray(model)).subgraphs[0]
    owner = {tensor: node for node, tensors in mapping.items() for tensor in tensors}
    consumers: dict[int, list[str]] = {}
    for op in subgraph.operators:
        for index in op.inputs:
            consumers.setdefault(int(index), []).append(subgraph.tensors[op.outputs[0]].name.decode())
    for op in reversed(subgraph.operators):
        name = subgraph.tensors[op.outputs[0]].name.decode()
        if name in owner:
            continue
        readers = {owner.get(reader) for index in op.outputs for reader in consumers.get(int(index), [])}
        if len(readers) == 1 and None not in readers:
            node = readers.pop()
            owner[name] = node
            mapping[node].append(name)


def _output_ops(graph, saved: SavedModel, model: bytes, op_outputs: list[list[str]]) -> dict[str, list[str]]:
    """ONNX node producing a graph output -> the TFLite ops that make that output.

    Those are the op producing the signature's output tensor and the ops onnx2tf named
    after the output (``out_1/Add`` for a Conv whose result is output ``out_1``).
    """
    from tensorflow.lite.tools import flatbuffer_utils

    tflite = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    tensors = tflite.subgraphs[0].tensors
    producer = {out: node.name for node in graph.node for out in node.output}
    produced = {t for outputs in op_outputs for t in outputs}
    found: dict[str, list[str]] = {}
    for entry in tflite.signatureDefs[0].outputs:
        plain = entry.name.decode()
        node = producer.get(saved.outputs.get(plain, ""))
        if node is None:
            continue
        named = [
            outputs[0] for outputs in op_outputs if any(c.startswith(f"{plain}/") for c in _op_components(outputs))
        ]
        tensor = tensors[entry.tensorIndex].name.decode()
        found[node] = _unique(named + ([tensor] if tensor in produced else []))
    return found


def _op_components(outputs: list[str]) -> set[str]:
    return {part for tensor in outputs for part in _components(tensor)}


def _unique(names) -> list[str]:
    return list(dict.fromkeys(names))


def denylist_for(exclude: Sequence[str], mapping: dict[str, list[str]], graph) -> list[str]:
    """The TFLite tensor names to keep float for ONNX nodes ``exclude``; unknown names are refused."""
    known = {node.name for node in graph.node}
    missing = [name for name in exclude if name not in known]
    if missing:
        raise EdgevisionError(
            f"layers {missing} are not nodes of the ONNX model; name nodes of its graph (Quantizer.layers() lists them)."
        )
    unmapped = [name for name in exclude if name not in mapping]
    if unmapped:
        raise EdgevisionError(
            f"layers {unmapped} have no op of their own in the TFLite file (onnx2tf or TensorFlow's converter "
            "folded them into others), so they cannot be kept in float; exclude the layers around them instead."
        )
    return _unique(t for name in exclude for t in mapping[name])


def restore_io_names(tflite: Path, saved: SavedModel) -> dict[str, str]:
    """Give the ``.tflite`` tensors their ONNX names; return {converter name: ONNX name}.

    The signature names inputs and outputs by the plain names given before onnx2tf ran;
    each output's shape is checked against the ONNX output's before renaming.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(tflite))
    graph, signature = model.subgraphs[0], model.signatureDefs[0]
    mapping = {}
    for entry in signature.inputs:
        mapping[_rename(graph, entry, saved.inputs[entry.name.decode()])] = saved.inputs[entry.name.decode()]
    for entry in signature.outputs:
        plain = entry.name.decode()
        _check_shape(graph.tensors[entry.tensorIndex], saved.output_shapes[plain], saved.outputs[plain])
        mapping[_rename(graph, entry, saved.outputs[plain])] = saved.outputs[plain]
    flatbuffer_utils.write_model(model, str(tflite))
    return mapping


def _rename(graph, entry, name: str) -> str:
    tensor = graph.tensors[entry.tensorIndex]
    old = tensor.name.decode()
    tensor.name = name.encode()
    entry.name = name.encode()
    return old


def _check_shape(tensor, want: tuple[int, ...], onnx_name: str) -> None:
    have = tuple(int(d) for d in tensor.shape)
    if want and all(want) and have != want:
        raise EdgevisionError(f"TFLite output for ONNX output {onnx_name} has shape {have}, expected {want}.")


# ----------------------------------------------------------------------------- whole conversion


def onnx_to_tflite(
    source: Path, output: Path, *, options: TfliteOptions = TfliteOptions(), calibrator: Int8Calibrator | None = None
) -> list[str]:
    """Convert ONNX ``source`` to ``output`` (``.tflite``); return notes for the metadata file.

    ``options.exclude`` (int8 only) names ONNX nodes to keep in float; a name that is not a
    node, or whose node has no op in the TFLite file, is refused. ``calibrator`` keeps the
    calibration between calls with the same calibration set.
    """
    saved = cached_saved_model(Path(source))
    denylist: list[str] = []
    if options.exclude:
        if options.precision != "int8":
            raise EdgevisionError("only int8 TFLite conversion can keep layers in float.")
        calibrator = calibrator or Int8Calibrator()
        graph = _graph(source)
        mapping = layer_ops(graph, saved, calibrator.calibrated_model(saved, options))
        denylist = denylist_for(options.exclude, mapping, graph)
    data = saved_model_to_tflite(saved, options, calibrator=calibrator, denylist=denylist)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(data)
    mapping = restore_io_names(output, saved)
    return conversion_notes(options, mapping)


def _graph(source: Path):
    import onnx

    return onnx.load(str(source), load_external_data=False).graph


def float_layers(source: Path, calibrator: Int8Calibrator | None = None, options: TfliteOptions | None = None):
    """ONNX node names of ``source`` that an int8 ``.tflite`` can keep in float, in graph order.

    With a ``calibrator`` and int8 ``options`` its calibrated model gives the op names;
    otherwise a float conversion does (same names: quantization does not rename ops).
    """
    saved = cached_saved_model(Path(source))
    if calibrator is not None and options is not None and options.calibration:
        model = calibrator.calibrated_model(saved, options)
    else:
        model = saved_model_to_tflite(saved, TfliteOptions("fp32"))
    graph = _graph(source)
    mapping = layer_ops(graph, saved, model)
    return [node.name for node in graph.node if node.name in mapping]


def onnx_layer_noise(
    source: Path, options: TfliteOptions, feeds: Sequence[Feeds], *, calibrator: Int8Calibrator | None = None
) -> dict[str, float]:
    """ONNX node name -> relative noise power its int8 TFLite ops add (the largest of its ops).

    ``options.exclude`` stays float, as in the int8 file ``options`` makes; ``feeds`` are the
    inputs the noise is measured on; nodes without an int8 op of their own are left out.
    """
    saved = cached_saved_model(Path(source))
    calibrator = calibrator or Int8Calibrator()
    graph = _graph(source)
    mapping = layer_ops(graph, saved, calibrator.calibrated_model(saved, options))
    denylist = denylist_for(options.exclude, mapping, graph)
    noise = layer_noise(calibrator, saved, options, denylist, feeds)
    by_node = {name: [noise[t] for t in tensors if t in noise] for name, tensors in mapping.items()}
    return {name: max(values) for name, values in by_node.items() if values}


def conversion_notes(options: TfliteOptions, mapping: dict[str, str]) -> list[str]:
    """What a user of the produced file should know: layout, I/O types, renamed tensors."""
    notes = [
        "input_layout: same as the ONNX source (onnx2tf -kat keeps it; no NHWC transpose)",
        "inputs and outputs are float32 (or the source's integer type); quantization is inside the graph",
        "tensor names restored from converter names: " + ", ".join(f"{k} -> {v}" for k, v in mapping.items()),
    ]
    if options.precision == "int8":
        notes.append(
            "int8 with float fallback for ops without int8 kernels; "
            f"{'per-channel' if options.per_channel else 'per-tensor'} weights"
        )
        notes.append("layers listed as excluded stay float: their TFLite ops are denylisted in TensorFlow's quantizer")
    return notes
