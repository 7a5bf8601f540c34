"""ONNX Runtime quantization: fp16, dynamic int8 and static int8 (QDQ) ONNX files.

>>> from edgevision.quantization import get_quantizer, QuantizeOptions
>>> ort_q = get_quantizer("ort")                                                  # doctest: +SKIP
>>> ort_q.quantize(src, out, options=QuantizeOptions(), calibration=feeds)        # doctest: +SKIP

Static int8 uses the combination that is fast on x86 ONNX Runtime: QDQ format, ``QUInt8``
activations and per-channel ``QInt8`` weights (``QInt8`` activations ran 2.4-2.8x and the
QOperator format 4-6x slower on the machines measured). Dynamic int8 uses ``QUInt8``
weights for the same reason.

Before calibrating, the model goes through ONNX Runtime's ``quant_pre_process`` (shape
inference; graph optimisation is skipped so that node names stay those of the source and
``exclude`` keeps working), and is checked for non-finite constants, which would give NaN
scales: TensorFlow's "SAME" max-pool padding (a Pad of -inf) is folded into the MaxPool,
anything else is refused.

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

from edgevision.errors import EdgevisionError
from edgevision.files import atomic_path
from edgevision.quantization import register_quantizer
from edgevision.quantization.base import Feeds, QuantizeOptions, Quantizer

logger = logging.getLogger(__name__)

# Entropy (KL) calibration compares candidate thresholds over a histogram. With ONNX
# Runtime's defaults (128 bins, 128 quantized bins) there is exactly one candidate, the
# full range, so "entropy" equals min-max. 1024 bins give 449 candidates.
ENTROPY_BINS = 1024
ENTROPY_QUANTIZED_BINS = 128
PERCENTILE_BINS = 2048


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
        self._prepared: dict[str, Path] = {}
        self._ranges: dict[tuple, Path] = {}

    def quantize(
        self, source: Path, output: Path, *, options: QuantizeOptions, calibration: Sequence[Feeds] = ()
    ) -> Path:
        """Write ``source`` quantized as ``options.precision`` to ``output`` (atomically)."""
        options = self.resolve(options)
        self.check(options, calibration)
        prepared = self.prepare(Path(source))
        check_exclude(prepared, options.exclude)
        with atomic_path(Path(output).resolve()) as tmp, private_cwd():
            if options.precision == "fp16":
                to_fp16(prepared, tmp, exclude=options.exclude)
            elif options.precision == "int8-dynamic":
                to_int8_dynamic(prepared, tmp, options)
            else:
                ranges = self.ranges(prepared, calibration, options)
                to_int8_static(prepared, tmp, options, ranges)
        self.notes = ort_notes(options, len(calibration))
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

    def prepare(self, source: Path) -> Path:
        """The source with finite constants and inferred shapes, ready to calibrate (cached)."""
        key = str(source.resolve())
        if key not in self._prepared:
            folder = Path(tempfile.mkdtemp(dir=self._work.name))
            self._prepared[key] = prepare_model(source, folder)
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
            with private_cwd():
                compute_ranges(prepared, calibration, options, path)
            self._ranges[key] = path
        return self._ranges[key]


def ort_notes(options: QuantizeOptions, count: int) -> list[str]:
    """One sentence on what ``OrtQuantizer.quantize`` made, for the metadata file."""
    if options.precision == "fp16":
        return ["ONNX Runtime fp16 weights and compute, float32 inputs and outputs"]
    weights = "per-channel" if options.per_channel else "per-tensor"
    if options.precision == "int8-dynamic":
        return [f"ONNX Runtime dynamic int8, uint8 {weights} weights"]
    return [
        f"ONNX Runtime static int8 QDQ, uint8 activations, int8 {weights} weights, "
        f"{options.method} calibration on {count} inputs"
    ]


# ----------------------------------------------------------------------------- preparing


@contextlib.contextmanager
def private_cwd() -> Iterator[Path]:
    """Run the block with a fresh temporary folder as the current folder; removed after.

    Give the tools inside absolute paths: relative ones would point into the temporary folder.
    """
    with tempfile.TemporaryDirectory(prefix="edgevision-ort-cwd-") as folder, contextlib.chdir(folder):
        yield Path(folder)


def prepare_model(source: Path, folder: Path) -> Path:
    """Fix or refuse non-finite constants, then run ``quant_pre_process`` into ``folder``."""
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
    return _pre_process(fixed, folder / "prepared.onnx")


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
    """fp16 weights and compute, float32 inputs and outputs (``onnxruntime.transformers.float16``)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(prepared)), keep_io_types=True, node_block_list=list(exclude))
    onnx.save(model, str(output))


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
