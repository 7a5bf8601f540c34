"""ONNX Runtime quantization: fp16, dynamic int8 and static int8 (QDQ) ONNX files.

>>> from edgevision.quantization import get_quantizer, QuantizeOptions
>>> ort_q = get_quantizer("ort")                                                  # doctest: +SKIP
>>> ort_q.quantize(src, out, options=QuantizeOptions(), calibration=feeds)        # doctest: +SKIP

Static int8 uses the combination that is fast on x86 ONNX Runtime: QDQ format, ``QUInt8``
activations and per-channel ``QInt8`` weights (``QInt8`` activations ran 2.4-2.8x and the
QOperator format 4-6x slower on the machines measured). Dynamic int8 uses ``QUInt8``
weights for the same reason. The int8 weights of dense convolutions are then re-scaled so
that no two neighbours overflow the saturating 16-bit pair sums of x86 CPUs without VNNI
(``edgevision.quantization.saturation``): without that, ONNX Runtime's int8 kernels there
computed something else than the file says (BlazePose's landmarks: 0.52 agreement where
the same file computed in float agreed 0.87).

Before calibrating, the model goes through ONNX Runtime's ``quant_pre_process`` (shape
inference; graph optimisation is skipped so that node names stay those of the source and
``exclude`` keeps working), and is checked for non-finite constants, which would give NaN
scales: TensorFlow's "SAME" max-pool padding (a Pad of -inf) is folded into the MaxPool,
anything else is refused.

Static int8 needs opset 13 (per-channel ``DequantizeLinear`` has an ``axis`` from 13 on):
older exports are upgraded first and checked for parity (``edgevision.quantization.opset``).
Post-processing inside the graph (NMS, TopK, loops: ``edgevision.quantization.postprocess``)
is kept in float at every precision; for fp16 the ops ONNX Runtime's converter cannot type
(``FP16_BLOCKED_OPS``) are kept float too.

Calibration ranges are computed once per source, calibration set and method and cached,
so re-quantizing with other layers excluded (the accuracy budget loop) takes seconds.

ONNX Runtime's tools drop files into the current folder (symbolic shape inference saves
``sym_shape_infer_temp.onnx`` and its weights under a random name when it gives up), so
they run inside a private temporary folder: nothing is written beside the user's files.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from edgevision.errors import EdgevisionError, cause
from edgevision.files import atomic_path
from edgevision.quantization import register_quantizer
from edgevision.quantization.base import Feeds, QuantizeOptions, Quantizer
from edgevision.quantization.opset import upgrade_note, upgrade_opset
from edgevision.quantization.postprocess import SEED_OPS, postprocessing_nodes, subgraph_node_names
from edgevision.quantization.saturation import pair_safe_qdq

logger = logging.getLogger(__name__)

# Entropy (KL) calibration compares candidate thresholds over a histogram. With ONNX
# Runtime's defaults (128 bins, 128 quantized bins) there is exactly one candidate, the
# full range, so "entropy" equals min-max. 1024 bins give 449 candidates.
ENTROPY_BINS = 1024
ENTROPY_QUANTIZED_BINS = 128
PERCENTILE_BINS = 2048
# Per-channel DequantizeLinear (static int8 QDQ) has an ``axis`` attribute from opset 13 on.
STATIC_INT8_OPSET = 13
# Ops whose float16 versions break or do not exist in ONNX Runtime's CPU kernels, beyond the
# converter's own DEFAULT_OP_BLOCK_LIST: post-processing and resampling.
FP16_BLOCKED_OPS = (*SEED_OPS, "Resize", "Upsample", "GatherND", "ScatterND", "Range", "CumSum")


@register_quantizer
class OrtQuantizer(Quantizer):
    """ONNX Runtime quantizer: ``fp16``, ``int8-dynamic`` and static ``int8`` (QDQ)."""

    name = "ort"
    runtime = "onnxruntime"
    suffix = ".onnx"
    precisions = ("fp16", "int8-dynamic", "int8")
    methods = ("minmax", "percentile", "entropy")

    def __init__(self) -> None:
        self._work = tempfile.TemporaryDirectory(prefix="edgevision-ort-")
        self._prepared: dict[tuple, Path] = {}
        self._upgrades: dict[tuple, str] = {}
        self._ranges: dict[tuple, Path] = {}
        self.kept_float: dict[str, str] = {}

    def quantize(
        self, source: Path, output: Path, *, options: QuantizeOptions, calibration: Sequence[Feeds] = ()
    ) -> Path:
        """Write ``source`` quantized as ``options.precision`` to ``output`` (atomically)."""
        options = self.resolve(options)
        self.check(options, calibration)
        opset = STATIC_INT8_OPSET if options.precision == "int8" else 0
        prepared = self.prepare(Path(source), opset=opset)
        check_exclude(prepared, options.exclude)
        self.kept_float, kept = float_nodes(prepared)
        inner = replace_exclude(options, [*options.exclude, *kept])
        with atomic_path(Path(output).resolve()) as tmp, private_cwd(), ort_failures(Path(source).name, options):
            if options.precision == "fp16":
                to_fp16(prepared, tmp, exclude=inner.exclude)
            elif options.precision == "int8-dynamic":
                to_int8_dynamic(prepared, tmp, inner)
            else:
                ranges = self.ranges(prepared, calibration, options)
                to_int8_static(prepared, tmp, inner, ranges)
                pair_safe_qdq(tmp, prepared)
        upgrade = self._upgrades.get((str(Path(source).resolve()), opset))
        self.notes = ([upgrade] if upgrade else []) + ort_notes(options, len(calibration))
        return Path(output)

    def check(self, options: QuantizeOptions, calibration: Sequence[Feeds] | None = None) -> None:
        """Refuse a precision or method this backend does not implement, or int8 without data."""
        if options.precision not in self.precisions:
            raise EdgevisionError(f"backend 'ort' makes {', '.join(self.precisions)}; not '{options.precision}'.")
        if options.method not in self.methods:
            raise EdgevisionError(
                f"unknown calibration method '{options.method}'; backend 'ort' has {', '.join(self.methods)}."
            )
        if options.precision == "int8" and calibration is not None and not calibration:
            raise EdgevisionError("static int8 needs calibration images; give a folder, glob or video with --calib.")

    def prepare(self, source: Path, *, opset: int = 0) -> Path:
        """The source with finite constants, at least ``opset`` and inferred shapes, ready to calibrate (cached)."""
        key = (str(source.resolve()), opset)
        if key not in self._prepared:
            folder = Path(tempfile.mkdtemp(dir=self._work.name))
            self._prepared[key] = prepare_model(source, folder, opset=opset)
            note = upgrade_note(source, self._prepared[key])
            if note:
                self._upgrades[key] = note
        return self._prepared[key]

    def layers(self, source: Path) -> list[str]:
        """Names of the nodes ``exclude`` can name: every node of the prepared graph."""
        import onnx

        return [n.name for n in onnx.load(str(self.prepare(Path(source))), load_external_data=False).graph.node]

    def ranges(self, prepared: Path, calibration: Sequence[Feeds], options: QuantizeOptions) -> Path:
        """A calibration-range cache file for this model, data and method (computed once)."""
        key = (str(prepared), id(calibration), len(calibration), options.method, options.percentile)
        if key not in self._ranges:
            path = Path(tempfile.mkdtemp(dir=self._work.name)).resolve() / "ranges.json"
            with private_cwd(), ort_failures(prepared.name, options):
                compute_ranges(prepared, calibration, options, path)
            self._ranges[key] = path
        return self._ranges[key]


def float_nodes(prepared: Path) -> tuple[dict[str, str], list[str]]:
    """The post-processing nodes to keep float (name -> why), and every node name to exclude for it
    (the nodes inside their loop bodies included)."""
    import onnx

    model = onnx.load(str(prepared), load_external_data=False)
    found = postprocessing_nodes(model)
    return found, [*found, *subgraph_node_names(model, found)]


def replace_exclude(options: QuantizeOptions, names: Sequence[str]) -> QuantizeOptions:
    """``options`` excluding ``names`` (first occurrence kept)."""
    from dataclasses import replace

    return replace(options, exclude=tuple(dict.fromkeys(names)))


@contextlib.contextmanager
def ort_failures(name: str, options: QuantizeOptions) -> Iterator[None]:
    """Turn a failure inside ONNX Runtime's quantization tools into one sentence with its cause."""
    try:
        yield
    except EdgevisionError:
        raise
    except Exception as exc:  # the tools raise anything from ValueError to onnx's own errors
        raise EdgevisionError(
            f"ONNX Runtime's {options.precision} quantizer failed on {name} ({cause(exc)}); "
            "keep the failing layers in float with --exclude, or try --backend openvino."
        ) from None


def ort_notes(options: QuantizeOptions, count: int) -> list[str]:
    """One sentence on what ``OrtQuantizer.quantize`` made, for the metadata file."""
    if options.precision == "fp16":
        return ["ONNX Runtime fp16 weights and compute, float32 inputs and outputs"]
    weights = "per-channel" if options.per_channel else "per-tensor"
    if options.precision == "int8-dynamic":
        return [f"ONNX Runtime dynamic int8, uint8 {weights} weights"]
    return [
        f"ONNX Runtime static int8 QDQ, uint8 activations, int8 {weights} weights, "
        f"{options.method} calibration on {count} inputs; dense convolution weights scaled so that no two "
        "neighbours overflow the 16-bit pair sums of x86 CPUs without VNNI"
    ]


# ----------------------------------------------------------------------------- preparing


@contextlib.contextmanager
def private_cwd() -> Iterator[Path]:
    """Run the block with a fresh temporary folder as the current folder; removed after.

    Give the tools inside absolute paths: relative ones would point into the temporary folder.
    """
    with tempfile.TemporaryDirectory(prefix="edgevision-ort-cwd-") as folder, contextlib.chdir(folder):
        yield Path(folder)


def prepare_model(source: Path, folder: Path, *, opset: int = 0) -> Path:
    """Fix or refuse non-finite constants, upgrade to ``opset`` when older (checked for parity),
    then run ``quant_pre_process`` into ``folder``."""
    import onnx

    source, folder = Path(source).resolve(), Path(folder).resolve()

    model = onnx.load(str(source))
    bad = nonfinite_constants(model)
    if bad:
        from edgevision.conversion.tfjs import fold_maxpool_pads

        folded = fold_maxpool_pads(model)
        bad = nonfinite_constants(model)
        if bad:
            raise EdgevisionError(
                f"{source.name} has non-finite constants ({', '.join(bad[:5])}) that would give NaN "
                "quantization scales; replace them with finite values before quantizing."
            )
        logger.info("folded %d -inf max-pool paddings into their MaxPool", folded)
    fixed = folder / "finite.onnx"
    onnx.save(model, str(fixed))
    upgraded = folder / "upgraded.onnx"
    note = upgrade_opset(fixed, upgraded, opset=opset) if opset else None
    with ort_failures(source.name, QuantizeOptions()):
        return _pre_process(upgraded if note else fixed, folder / "prepared.onnx")


def nonfinite_constants(model) -> list[str]:
    """Names of float initializers and Constant nodes holding inf or NaN."""
    from onnx import numpy_helper

    found = [t.name for t in model.graph.initializer if _nonfinite(numpy_helper.to_array(t))]
    for node in model.graph.node:
        is_tensor = node.op_type == "Constant" and node.attribute and node.attribute[0].type == node.attribute[0].TENSOR
        if is_tensor and _nonfinite(numpy_helper.to_array(node.attribute[0].t)):
            found.append(node.name or node.output[0])
    return found


def _nonfinite(array: np.ndarray) -> bool:
    return array.dtype.kind == "f" and not np.isfinite(array).all()


def _pre_process(source: Path, target: Path) -> Path:
    """ORT's shape inference; symbolic shape inference is skipped when it fails."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with private_cwd():
        try:
            quant_pre_process(str(source), str(target), skip_optimization=True)
        except Exception as exc:  # symbolic inference fails on some graphs; ONNX's own then suffices
            logger.info("symbolic shape inference failed (%s); using ONNX shape inference only", exc)
            quant_pre_process(str(source), str(target), skip_optimization=True, skip_symbolic_shape=True)
    return target


def check_exclude(model_path: Path, exclude: Sequence[str]) -> None:
    """Refuse excluded layer names the graph does not have (instead of silently ignoring them)."""
    if not exclude:
        return
    import onnx

    names = [n.name for n in onnx.load(str(model_path), load_external_data=False).graph.node]
    missing = [e for e in exclude if e not in set(names)]
    if missing:
        close = difflib.get_close_matches(missing[0], names, n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else "."
        raise EdgevisionError(f"the model has no layer named {', '.join(missing[:5])}{hint}")


# ----------------------------------------------------------------------------- quantizing


class _Reader:
    """Feeds for ONNX Runtime's calibrators (a ``CalibrationDataReader``)."""

    def __init__(self, feeds: Sequence[Feeds]) -> None:
        self._feeds = list(feeds)
        self._iter: Iterator[Feeds] = iter(self._feeds)

    def get_next(self) -> Feeds | None:
        return next(self._iter, None)

    def __iter__(self) -> Iterator[Feeds]:
        return iter(self._feeds)

    def __len__(self) -> int:
        return len(self._feeds)

    def rewind(self) -> None:
        self._iter = iter(self._feeds)


def _method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    return {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }[name]


def calibrator_options(options: QuantizeOptions) -> dict:
    """Options for ORT's calibrators: asymmetric ranges (uint8 activations) and real histograms."""
    extra: dict = {"symmetric": False}
    if options.method == "entropy":
        extra.update(num_bins=ENTROPY_BINS, num_quantized_bins=ENTROPY_QUANTIZED_BINS)
    elif options.method == "percentile":
        extra.update(num_bins=PERCENTILE_BINS, percentile=options.percentile)
    return extra


def compute_ranges(prepared: Path, calibration: Sequence[Feeds], options: QuantizeOptions, path: Path) -> None:
    """Run the calibrator over ``calibration`` and save the tensor ranges to ``path``.

    The calibrator is driven here rather than inside ``quantize_static`` because that call
    does not pass histogram sizes on, which makes its entropy method equal to min-max.
    """
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    calibrator = create_calibrator(
        prepared,
        [],
        augmented_model_path=str(path.with_name("augmented.onnx")),
        calibrate_method=_method(options.method),
        extra_options=calibrator_options(options),
    )
    with contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrators print progress
        calibrator.collect_data(_Reader(calibration))
        ranges = calibrator.compute_data()
    save_tensors_data(ranges, path)
    logger.info("calibrated %d tensors on %d inputs (%s)", len(ranges.data), len(calibration), options.method)


def to_int8_static(prepared: Path, output: Path, options: QuantizeOptions, ranges: Path) -> None:
    """Static int8 QDQ: uint8 activations, int8 (per-channel) weights, cached ranges."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    with contextlib.redirect_stdout(io.StringIO()), _quiet_root_logger():
        quantize_static(
            str(prepared),
            str(output),
            None,
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=options.per_channel,
            calibrate_method=_method(options.method),
            nodes_to_exclude=list(options.exclude),
            calibration_cache_path=str(ranges),
            extra_options={"ActivationSymmetric": False, **options.extra},
        )


def to_int8_dynamic(prepared: Path, output: Path, options: QuantizeOptions) -> None:
    """Dynamic int8: uint8 weights (int8 weights ran 4x slower), activations quantized at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_root_logger():
        quantize_dynamic(
            str(prepared),
            str(output),
            weight_type=QuantType.QUInt8,
            per_channel=options.per_channel,
            nodes_to_exclude=list(options.exclude),
            extra_options=dict(options.extra),
        )


def to_fp16(prepared: Path, output: Path, *, exclude: Sequence[str] = ()) -> None:
    """fp16 weights and compute, float32 inputs and outputs (``onnxruntime.transformers.float16``).

    ``exclude`` and the ops of ``FP16_BLOCKED_OPS`` stay float32, with casts around them.
    """
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    source = onnx.load(str(prepared))
    floats = float_tensors(source)
    model = convert_float_to_float16(
        source,
        keep_io_types=True,
        op_block_list=sorted({*DEFAULT_OP_BLOCK_LIST, *FP16_BLOCKED_OPS}),
        node_block_list=list(exclude),
    )
    float_outer_reads(model, floats)
    onnx.save(model, str(output))


def float_tensors(model) -> set[str]:
    """Names of the float32 tensors of ``model``'s top graph (after ONNX shape inference)."""
    import onnx

    graph = onnx.shape_inference.infer_shapes(model).graph
    infos = [*graph.input, *graph.output, *graph.value_info]
    floats = {i.name for i in infos if i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    return floats | {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT}


def float_outer_reads(model, floats: set[str]) -> int:
    """Give the loop bodies (and branches) left float32 the float32 tensors they read from outside.

    ONNX Runtime's converter casts a blocked node's float32 inputs back but not the tensors its
    subgraph reads from the outer graph, which become float16 and make the graph invalid. No
    tool fixes that, so here: a body reading ``X`` that the converter re-typed reads the float32
    tensor behind the converter's own cast, or a new cast to float32. Returns the reads rewired.
    """
    from onnx import TensorProto, helper

    from edgevision.quantization.postprocess import CONTROL_FLOW_OPS, outer_reads, rename_inputs

    nodes = list(model.graph.node)
    producer = {out: n for n in nodes for out in n.output}
    rewired: dict[str, str] = {}
    for node in (n for n in nodes if n.op_type in CONTROL_FLOW_OPS):  # all blocked: FP16_BLOCKED_OPS
        for name in sorted(outer_reads(node) & floats):
            if name not in rewired:
                cast = producer.get(name)
                if cast is not None and cast.name == name + "_cast_to_fp16_node":
                    rewired[name] = cast.input[0]
                else:
                    rewired[name] = name + "_outer_fp32"
                    model.graph.node.append(
                        helper.make_node("Cast", [name], [rewired[name]], to=TensorProto.FLOAT, name=rewired[name])
                    )
            rename_inputs(node, {name: rewired[name]})
    return len(rewired)


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """ORT's quantization tools warn through the root logger about things handled here."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)
