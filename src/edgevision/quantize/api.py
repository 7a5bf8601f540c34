"""``quantize_model``: one call from a zoo name or ONNX file to a quantized file with metadata.

>>> from edgevision.quantize import QuantizeOptions
>>> from edgevision.quantize.api import quantize_model
>>> r = quantize_model("nanodet-m", backend="ort", precision="auto", calib="vtest.avi",
...                    output=None, options=QuantizeOptions(), max_drop=0.02, strict=False)  # doctest: +SKIP
>>> r.size_ratio, r.agreement                                                               # doctest: +SKIP
(0.27, 0.97)
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgevision.compare import model_bytes
from edgevision.errors import EdgevisionError
from edgevision.files import copy_atomic, sha256_file
from edgevision.models.transforms import ImageTransform, resize
from edgevision.quantize import get_quantizer
from edgevision.quantize.base import QuantizeOptions, Quantizer
from edgevision.quantize.budget import (
    AgreementJudge,
    BudgetResult,
    compare_latency,
    run_budget,
)
from edgevision.quantize.calibration import CalibrationSet, load_calibration
from edgevision.types import RawOutputs
from edgevision.variants import VariantMeta, read_meta, write_meta

logger = logging.getLogger(__name__)

PRECISIONS = ("fp16", "int8-dynamic", "int8", "auto")
DEFAULT_MAX_DROP = 0.02


@dataclass
class QuantizeResult:
    """What ``quantize_model`` wrote and measured."""

    output: Path
    source: Path
    source_model: str
    backend: str
    precision: str
    source_bytes: int
    output_bytes: int
    metric: str = ""
    agreement: float | None = None
    budget_met: bool | None = None
    excluded: list[str] = field(default_factory=list)
    attempts: list[dict] = field(default_factory=list)
    parity: dict = field(default_factory=dict)
    latency_ms: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # the quantizer's own account of what it did
    seconds: float = 0.0

    @property
    def size_ratio(self) -> float:
        return self.output_bytes / self.source_bytes


class BudgetNotMetError(EdgevisionError):
    """The accuracy budget could not be met (raised only with ``strict``); the best variant is kept."""

    def __init__(self, result: QuantizeResult) -> None:
        super().__init__(
            f"agreement {result.agreement:.3f} misses the budget; the best variant is kept at {result.output}."
        )
        self.result = result


@dataclass(frozen=True)
class ResolvedModel:
    """A source ONNX file and, when known, the family processor that feeds and decodes it."""

    name: str
    path: Path
    processor: object


# ----------------------------------------------------------------------------- resolving


def resolve_source(model: str, *, weights: Path | None = None, random_weights: bool = False) -> ResolvedModel:
    """Zoo name -> its ONNX file and processor; an ONNX file -> itself (its source's processor when known).

    PyTorch zoo models are exported to ONNX first (with ``weights``, or seeded random
    weights when ``random_weights``), through ``edgevision.zoo.pytorch.export_torch_model``.
    """
    from edgevision.zoo import list_models

    if model in list_models():
        processor = zoo_processor(model)
        # Random weights make decoded predictions meaningless: compare raw outputs instead.
        processor = RawOutputsOf(processor) if random_weights else processor
        return ResolvedModel(model, zoo_onnx(model, weights=weights, random_weights=random_weights), processor)
    path = Path(model)
    if not path.is_file():
        from edgevision.zoo import get_spec

        if path.suffix or "/" in model:
            raise EdgevisionError(f"model file {model} does not exist.")
        get_spec(model)  # raises, naming the closest zoo models
    if path.suffix.lower() != ".onnx":
        raise EdgevisionError(f"{path.name} is not an ONNX file; quantization starts from ONNX (see: edgevision convert).")
    meta = read_meta(path)
    if meta is not None and meta.source_model in list_models():
        return ResolvedModel(meta.source_model, path, zoo_processor(meta.source_model))
    return ResolvedModel(path.stem, path, RawImageProcessor.for_model(path))


def zoo_onnx(name: str, *, weights: Path | None, random_weights: bool) -> Path:
    """The zoo model's ONNX file: pulled, or exported from PyTorch for PyTorch families."""
    from edgevision.zoo import get_spec, model_file
    from edgevision.zoo.pytorch import export_torch_model, is_pytorch_family

    spec = get_spec(name)
    if is_pytorch_family(spec):
        return export_torch_model(spec, weights=weights, random_weights=random_weights)
    if weights is not None or random_weights:
        raise EdgevisionError(f"{name} comes with its own weights; --weights and --random-weights are for PyTorch models.")
    return model_file(name, "onnx")


def zoo_processor(name: str):
    """The zoo model's processor (its spec's factory); raw image feeding when it has none."""
    from edgevision.zoo import get_spec

    spec = get_spec(name)
    if spec.processor is None:
        raise EdgevisionError(f"{name} has no single-stage processor; quantize its ONNX file as a raw model.")
    return spec.processor()


@dataclass
class RawImageProcessor:
    """Feeds an image to a model without a known family: resize, RGB, /255, NCHW or NHWC."""

    size: tuple[int, int]  # (width, height)
    nchw: bool
    dtype: str = "float32"
    task = "raw"

    @classmethod
    def for_model(cls, path: Path) -> RawImageProcessor:
        from edgevision.zoo.info import onnx_summary

        spec = onnx_summary(path)[1][0]
        shape = [d or 1 for d in spec.shape]
        if len(shape) != 4 or 3 not in (shape[1], shape[3]):
            raise EdgevisionError(f"{path.name}: input {spec.name} {spec.shape} is not an image; cannot calibrate it.")
        nchw = shape[1] == 3 and shape[3] != 3
        h, w = (shape[2], shape[3]) if nchw else (shape[1], shape[2])
        return cls((w if w > 1 else 224, h if h > 1 else 224), nchw, spec.dtype)

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, ImageTransform]:
        resized, transform = resize(image, self.size)
        x = resized[..., ::-1].astype(self.dtype) / (255.0 if np.dtype(self.dtype).kind == "f" else 1)
        x = x.transpose(2, 0, 1)[None] if self.nchw else x[None]
        return np.ascontiguousarray(x, dtype=self.dtype), transform

    def decode(self, outputs: dict[str, np.ndarray], transform: ImageTransform) -> RawOutputs:
        return RawOutputs(outputs)


@dataclass
class RawOutputsOf:
    """A family processor's pre-processing without its decoding (agreement by output cosine)."""

    inner: object
    task = "raw"

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, ImageTransform]:
        return self.inner.preprocess(image)

    def decode(self, outputs: dict[str, np.ndarray], transform: ImageTransform) -> RawOutputs:
        return RawOutputs(outputs)


# ----------------------------------------------------------------------------- the call


def default_output(model: str, backend: str, precision: str, suffix: str) -> Path:
    return Path("runs/quantize") / f"{Path(model).stem}-{backend}-{precision}" / f"model{suffix}"


def quantize_model(
    model: str,
    *,
    backend: str,
    precision: str,
    calib: str | None,
    output: Path | None,
    options: QuantizeOptions,
    max_drop: float | None,
    strict: bool,
    holdout: str | None = None,
    calib_count: int = 64,
    threads: int = 2,
    progress: Callable[[str], None] | None = None,
    weights: Path | None = None,
    random_weights: bool = False,
    default_holdout: bool = True,
) -> QuantizeResult:
    """Quantize ``model`` for ``backend`` at ``precision`` ("auto": int8 within ``max_drop``).

    Writes the model and its metadata file atomically. A budget that cannot be met keeps
    the best variant and reports it; with ``strict`` it then raises ``BudgetNotMetError``.
    Agreement is measured on images of ``calib`` held apart from calibration, plus the
    sample photos (``default_holdout``) and the images of ``holdout``. ``weights`` /
    ``random_weights`` choose the weights of PyTorch zoo models.
    """
    start = time.perf_counter()
    say = progress or logger.info
    if precision not in PRECISIONS:
        raise EdgevisionError(f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}.")
    quantizer = get_quantizer(backend)
    concrete = "int8" if precision == "auto" else precision
    options = quantizer.resolve(replace(options, precision=concrete))
    _check_supported(quantizer, options)
    source = resolve_source(model, weights=weights, random_weights=random_weights)
    say(f"source: {source.path} ({source.path.stat().st_size / 1e6:.2f} MB)")
    holdouts = default_holdout_photos(source.processor) if default_holdout and calib else []
    holdouts += [holdout] if holdout else []
    calibration = _calibration(source, calib, holdouts, calib_count, concrete, say)
    output = Path(output) if output else default_output(source.name, backend, precision, quantizer.suffix)
    budget = max_drop if max_drop is not None else (DEFAULT_MAX_DROP if precision == "auto" else None)
    result = _quantize(source, quantizer, options, calibration, budget, output, threads, say)
    result.precision = precision
    result.seconds = time.perf_counter() - start
    _write_meta(result, source, quantizer, options, calibration, budget)
    if strict and result.budget_met is False:
        raise BudgetNotMetError(result)
    return result


def _check_supported(quantizer: Quantizer, options: QuantizeOptions) -> None:
    if options.precision not in quantizer.precisions:
        raise EdgevisionError(
            f"backend '{quantizer.name}' makes {', '.join(quantizer.precisions)}; not '{options.precision}'."
        )
    if options.method not in quantizer.methods:
        raise EdgevisionError(
            f"backend '{quantizer.name}' calibrates with {', '.join(quantizer.methods)}; not '{options.method}'."
        )


# Photos added to every held-out set, so agreement is not judged on one scene only. Pose
# models get photos of one or a few large people (the single-pose models' use case).
DETECTION_PHOTOS = ("person.jpg", "messi5.jpg", "basketball1.png", "dog.jpg", "horses.jpg")
POSE_PHOTOS = ("person.jpg", "messi5.jpg", "basketball1.png")


def default_holdout_photos(processor) -> list[str]:
    """Paths of the sample photos held out for agreement (none when they cannot be fetched)."""
    from edgevision.samples import sample_path

    names = POSE_PHOTOS if getattr(processor, "task", "") == "pose" else DETECTION_PHOTOS
    try:
        return [str(sample_path(name)) for name in names]
    except EdgevisionError as exc:
        logger.warning("sample photos unavailable (%s); agreement uses calibration-source images only", exc)
        return []


def _calibration(source: ResolvedModel, calib: str | None, holdout: list[str], count: int, precision: str, say):
    if calib is None:
        if precision == "int8":
            raise EdgevisionError(
                "int8 needs calibration images: give a folder, glob or video with --calib "
                "(e.g. --calib \"$(edgevision samples path vtest.avi)\")."
            )
        say("no --calib: agreement with float is not measured")
        return None
    from edgevision.zoo.info import onnx_summary

    input_name = onnx_summary(source.path)[1][0].name
    calibration = load_calibration(calib, source.processor, input_name=input_name, count=count, holdout_source=holdout)
    say(f"calibration: {calibration.description['count']} images, {calibration.description['holdout']} held out")
    return calibration


def _quantize(source, quantizer, options, calibration, budget, output, threads, say) -> QuantizeResult:
    with tempfile.TemporaryDirectory(prefix="edgevision-quantize-") as tmp:
        work = Path(tmp)
        if calibration is None or not calibration.holdout_feeds:
            quantizer.quantize(source.path, work / f"model{quantizer.suffix}", options=options,
                               calibration=calibration.feeds if calibration else ())  # fmt: skip
            chosen, judge, outcome = work / f"model{quantizer.suffix}", None, None
        else:
            judge = AgreementJudge(source.path, calibration, source.processor, threads=threads)
            outcome = run_budget(source.path, quantizer=quantizer, options=options, calibration=calibration,
                                 judge=judge, max_drop=budget if budget is not None else 1.0, workdir=work,
                                 progress=say)  # fmt: skip
            chosen = outcome.best.path
        _move_model(chosen, output)
        result = _result(source, quantizer, options, output, outcome, budget)
        result.notes = list(getattr(quantizer, "notes", []))
        if judge is not None:
            result.parity = judge.parity(output, quantizer.runtime)
            _time(result, source, quantizer, calibration, threads, say)
    return result


def _move_model(chosen: Path, output: Path) -> None:
    """Move the chosen file (and companions such as ``.bin``) to ``output``, each atomically."""
    output.parent.mkdir(parents=True, exist_ok=True)
    for part in sorted(chosen.parent.glob(chosen.stem + ".*")):
        target = output.with_suffix(part.suffix) if part.suffix != chosen.suffix else output
        copy_atomic(part, target)


def _result(source, quantizer, options, output: Path, outcome: BudgetResult | None, budget) -> QuantizeResult:
    result = QuantizeResult(
        output=output, source=source.path, source_model=source.name, backend=quantizer.name,
        precision=options.precision, source_bytes=model_bytes(source.path), output_bytes=model_bytes(output),
    )  # fmt: skip
    if outcome is not None:
        result.metric = outcome.metric
        result.agreement = outcome.best.agreement
        result.excluded = list(outcome.best.excluded)
        result.attempts = [a.to_dict() for a in outcome.attempts]
        result.budget_met = outcome.met if budget is not None else None
        if result.budget_met is False:
            result.warnings.append(
                f"budget not met: best agreement {outcome.best.agreement:.3f} < {1 - budget:.3f}; best variant kept"
            )
    return result


def _time(result: QuantizeResult, source, quantizer, calibration: CalibrationSet, threads: int, say) -> None:
    """p50 latency of float and the variant here; a loud warning when the variant is slower."""
    feeds = calibration.holdout_feeds[0]
    times = compare_latency({"fp32": (source.path, "onnxruntime"), result.precision: (result.output, quantizer.runtime)},
                            feeds, threads=threads)  # fmt: skip
    result.latency_ms = {k: round(v, 2) for k, v in times.items()}
    say(f"p50 at {threads} threads: " + ", ".join(f"{k} {v:.1f} ms" for k, v in result.latency_ms.items()))
    if times[result.precision] > times["fp32"]:
        result.warnings.append(
            f"{result.precision} is SLOWER than fp32 on this machine "
            f"({times[result.precision]:.1f} ms vs {times['fp32']:.1f} ms p50 at {threads} threads)"
        )


def _write_meta(result: QuantizeResult, source, quantizer, options, calibration, budget) -> None:
    meta = VariantMeta(
        source_model=source.name, source_sha256=sha256_file(source.path), runtime=quantizer.runtime,
        precision=options.precision, step="quantize", excluded=result.excluded, parity=result.parity,
        calibration=_calibration_record(calibration, options),
        agreement={"metric": result.metric, "value": result.agreement, "max_drop": budget,
                   "met": result.budget_met, "attempts": result.attempts, "latency_ms_p50": result.latency_ms},
        notes=list(result.notes) + list(result.warnings),
    )  # fmt: skip
    write_meta(result.output, meta)


def _calibration_record(calibration: CalibrationSet | None, options: QuantizeOptions) -> dict:
    record = {"method": options.method, "per_channel": options.per_channel, "backend_options": dict(options.extra)}
    if options.method == "percentile":
        record["percentile"] = options.percentile
    return {**record, **(calibration.description if calibration else {"images": 0})}
