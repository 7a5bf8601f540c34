"""``quantize_model``: one call from a zoo name or ONNX file to a quantized file with metadata.

>>> import edgevision
>>> r = edgevision.quantize("nanodet-m", backend="openvino", precision="auto", calib="vtest.avi")  # doctest: +SKIP
>>> r.size_ratio, r.agreement                                                                   # doctest: +SKIP
(0.28, 0.98)
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from edgevision.checks import check_threads, media_input, output_file, writable_place
from edgevision.compare import DEFAULT_MAX_DROP, model_bytes
from edgevision.errors import EdgevisionError
from edgevision.files import copy_atomic, sha256_file
from edgevision.modelfiles import weights_of_ir
from edgevision.models.card import CardRequest
from edgevision.models.raw import RawOutputsOf, raw_processor
from edgevision.quantization import get_quantizer
from edgevision.quantization.base import PRECISIONS, QuantizeOptions, Quantizer
from edgevision.quantization.budget import (
    AgreementJudge,
    BudgetResult,
    compare_latency,
    run_budget,
)
from edgevision.quantization.calibration import (
    CalibrationSet,
    holdout_only,
    load_calibration,
    noise_images,
    read_images,
)
from edgevision.quantization.postprocess import summary
from edgevision.variants import VariantMeta, write_meta
from edgevision.zoo.assemble import (
    file_decoding,
    processor_for,
    refuse_card,
    refuse_weights,
    resolve_model,
    source_model_of,
)
from edgevision.zoo.pull import model_file
from edgevision.zoo.pytorch import export_torch_model, is_pytorch_family

logger = logging.getLogger(__name__)


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
    latency_fp32_runtime: str | None = None  # the runtime latency_ms["fp32"] was timed on
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
    card: dict = field(default_factory=dict)  # the model card the source file decodes with, carried into the output


# ----------------------------------------------------------------------------- resolving


def resolve_source(
    model: str, *, weights: Path | None = None, random_weights: bool = False, card: CardRequest = CardRequest()
) -> ResolvedModel:
    """Zoo name -> its ONNX file and processor; an ONNX file -> itself (its source's processor when known).

    PyTorch zoo models are exported to ONNX first (with ``weights``, or seeded random
    weights when ``random_weights``). Random weights make decoded predictions meaningless:
    their raw outputs are compared instead.
    """
    target = resolve_model(model)
    if isinstance(target, Path):
        if target.suffix.lower() != ".onnx":
            raise EdgevisionError(
                f"{target.name} is not an ONNX file; quantization starts from ONNX (see: edgevision convert)."
            )
        decoding = file_decoding(target, card)
        name = source_model_of(target) or target.stem
        return ResolvedModel(name, target, decoding.processor or _raw_processor(target), decoding.card_fields)
    refuse_card(target, card)
    processor = processor_for(target.name)
    if processor is None:
        raise EdgevisionError(f"{target.name} has no single-stage processor; quantize its ONNX file as a raw model.")
    if is_pytorch_family(target):
        onnx = export_torch_model(target, weights=weights, random_weights=random_weights)
        return ResolvedModel(target.name, onnx, RawOutputsOf(processor) if weights is None else processor)
    refuse_weights(target, weights, random_weights)
    return ResolvedModel(target.name, model_file(target.name, "onnx"), processor)


def _raw_processor(path: Path):
    from edgevision.zoo.info import onnx_summary

    spec = onnx_summary(path)[1][0]
    processor = raw_processor(spec)
    if processor is None:
        raise EdgevisionError(f"{path.name}: input {spec.name} {spec.shape} is not an image; cannot calibrate it.")
    return processor


# ----------------------------------------------------------------------------- the call


def default_output(model: str, backend: str, precision: str, suffix: str) -> Path:
    return Path("runs/quantize") / f"{Path(model).stem}-{backend}-{precision}" / f"model{suffix}"


def quantize_model(
    model: str,
    *,
    backend: str,
    output: Path | None = None,
    options: QuantizeOptions = QuantizeOptions(),
    weights: Path | None = None,
    random_weights: bool = False,
    card: CardRequest = CardRequest(),
    progress: Callable[[str], None] | None = None,
) -> QuantizeResult:
    """Quantize zoo model or ONNX file ``model`` for ``backend`` as ``options`` say.

    Writes the model and its metadata file atomically. A budget that cannot be met keeps
    the best variant and reports it; with ``options.strict`` it then raises
    ``BudgetNotMetError``. ``weights`` / ``random_weights`` choose the weights of PyTorch
    zoo models.
    """
    start = time.perf_counter()
    say = progress or logger.info
    quantizer, concrete = _quantizer_for(backend, options)
    resolve_model(model)  # an unknown name or a broken file first, before the other inputs
    check_quantize(options, output, quantizer)
    source = resolve_source(model, weights=weights, random_weights=random_weights, card=card)
    say(f"source: {source.path} ({source.path.stat().st_size / 1e6:.2f} MB)")
    holdouts = default_holdout_photos(source.processor) if options.default_holdout and options.calib else []
    holdouts += [options.holdout] if options.holdout else []
    calibration = _calibration(source, options, holdouts, say)
    output = Path(output) if output else default_output(source.name, backend, options.precision, quantizer.suffix)
    result = _quantize(source, quantizer, concrete, calibration, output, options.precision == "auto", say)
    result.precision = options.precision
    result.seconds = time.perf_counter() - start
    _write_meta(result, source, quantizer, concrete, calibration, options.max_drop)
    if options.strict and result.budget_met is False:
        raise BudgetNotMetError(result)
    return result


def _quantizer_for(backend: str, options: QuantizeOptions) -> tuple[Quantizer, QuantizeOptions]:
    """The backend's quantizer and the options it runs with (auto -> int8, its default method)."""
    if options.precision not in PRECISIONS:
        raise EdgevisionError(f"unknown precision '{options.precision}'; choose one of {', '.join(PRECISIONS)}.")
    quantizer = get_quantizer(backend)
    concrete = quantizer.resolve(
        replace(options, precision="int8" if options.precision == "auto" else options.precision)
    )
    quantizer.check(concrete)
    return quantizer, concrete


def check_quantize(options: QuantizeOptions, output: Path | None, quantizer: Quantizer) -> None:
    """Raise, before any work, for missing or unreadable calibration images or an output the backend cannot write."""
    if options.calib is None and options.precision in ("int8", "auto"):
        raise EdgevisionError(
            "int8 needs calibration images: give a folder, glob or video with --calib "
            '(e.g. --calib "$(edgevision samples path vtest.avi)").'
        )
    for images in (options.calib, options.holdout):
        if images is not None:
            media_input(images, what="calibration images" if images == options.calib else "held-out images")
    check_threads([options.threads])
    if output is None:
        writable_place(default_output("model", quantizer.name, options.precision, quantizer.suffix).parent.parent)
        return
    if Path(output).suffix.lower() != quantizer.suffix:
        raise EdgevisionError(
            f"backend '{quantizer.name}' writes {quantizer.suffix} files; give an output ending in {quantizer.suffix}, "
            f"not {Path(output).name}."
        )
    output_file(output, suffixes=(quantizer.suffix,), what=f"a {quantizer.name} model file")
    if quantizer.suffix == ".xml":
        output_file(weights_of_ir(Path(output)), suffixes=(".bin",), what="the IR's weights file")


# Photos added to every held-out set, so agreement is not judged on one scene only. Pose
# models get photos of one or a few large people (the single-pose models' use case).
DETECTION_PHOTOS = ("person.jpg", "messi5.jpg", "basketball1.png", "dog.jpg", "horses.jpg")


def default_holdout_photos(processor) -> list[str]:
    """Paths of the sample photos held out for agreement (none when they cannot be fetched)."""
    from edgevision.samples import POSE_PHOTOS, sample_path

    names = POSE_PHOTOS if getattr(processor, "task", "") == "pose" else DETECTION_PHOTOS
    try:
        return [str(sample_path(name)) for name in names]
    except EdgevisionError as exc:
        logger.warning("sample photos unavailable (%s); agreement uses calibration-source images only", exc)
        return []


def _calibration(source: ResolvedModel, options: QuantizeOptions, holdout: list[str], say) -> CalibrationSet | None:
    if options.calib is None:
        if options.precision in ("int8", "auto"):
            raise EdgevisionError(
                "int8 needs calibration images: give a folder, glob or video with --calib "
                '(e.g. --calib "$(edgevision samples path vtest.avi)").'
            )
        return _check_images(source, options, say)
    input_name = _input_name(source)
    calibration = load_calibration(
        options.calib, source.processor, input_name=input_name, count=options.calib_count, holdout_source=holdout
    )
    say(f"calibration: {calibration.description['count']} images, {calibration.description['holdout']} held out")
    return calibration


def _input_name(source: ResolvedModel) -> str:
    from edgevision.zoo.info import onnx_summary

    return onnx_summary(source.path)[1][0].name


def _check_images(source: ResolvedModel, options: QuantizeOptions, say) -> CalibrationSet | None:
    """Without --calib (fp16, int8-dynamic): held-out images for the parity check, the sample photos
    (or seeded noise images when they cannot be fetched); None when ``default_holdout`` is off."""
    if not options.default_holdout:
        say("no --calib: agreement with float is not measured")
        return None
    paths = default_holdout_photos(source.processor)
    images = [read_images(p, 1, min_images=1)[0][0] for p in paths]
    where = "sample photos" if images else "seeded noise images"
    images = images or noise_images()
    say(f"no --calib: agreement with float is measured on {len(images)} {where}")
    description = {"source": where, "holdout_source": paths}
    return holdout_only(images, source.processor, input_name=_input_name(source), description=description)


def _quantize(
    source, quantizer, options: QuantizeOptions, calibration, output: Path, repair: bool, say
) -> QuantizeResult:
    """Quantize (through the budget loop when there are held-out images), check, move into place, measure."""
    budget, threads = options.max_drop, options.threads
    with tempfile.TemporaryDirectory(prefix="edgevision-quantize-") as tmp:
        work = Path(tmp)
        if calibration is None or not calibration.holdout_feeds:
            chosen, judge, outcome = work / f"model{quantizer.suffix}", None, None
            quantizer.quantize(
                source.path, chosen, options=options, calibration=calibration.feeds if calibration else ()
            )
        else:
            judge = AgreementJudge(source.path, calibration, source.processor, threads=threads)
            outcome = run_budget(
                source.path,
                quantizer=quantizer,
                options=options,
                calibration=calibration,
                judge=judge,
                max_drop=budget if budget is not None else 1.0,
                workdir=work,
                repair=repair,
                progress=say,
            )
            chosen = outcome.best.path
        parity = judge.parity(chosen, quantizer.runtime) if judge is not None else {}
        if options.precision == "fp16" and outcome is not None:
            refuse_broken(outcome, parity, source.path.name, max_drop=DEFAULT_MAX_DROP if budget is None else budget)
        _move_model(chosen, output)
        result = _result(source, quantizer, options, output, outcome, budget)
        made = outcome.best if outcome is not None else quantizer  # the chosen attempt's account, not the last's
        result.notes, result.parity = list(getattr(made, "notes", [])), parity
        if outcome is not None and outcome.ranked_by and outcome.best.excluded:
            result.notes.append(f"budget: layers kept float by rank, ranked by {outcome.ranked_by}")
        _record_kept_float(result, getattr(made, "kept_float", {}), say)
        if judge is not None:
            _time(result, source, quantizer, calibration, threads, say)
    return result


# fp16 rounding alone keeps every output's SQNR near 60 dB or more; below this floor the
# values themselves changed (out of float16's range, or a cast in the wrong place), which a
# scale-blind cosine does not see.
FP16_MIN_SQNR_DB = 30.0


def refuse_broken(outcome: BudgetResult, parity: dict, name: str, *, max_drop: float) -> None:
    """Raise when fp16, a step that should keep the model's numbers, changes them.

    Refused: agreement with fp32 below ``1 - max_drop`` (the budget of every other step), or
    an output below ``FP16_MIN_SQNR_DB``; NaN (inf or NaN outputs) fails both.
    """
    agreement = outcome.best.agreement
    low = [(n, f["sqnr_db"]) for n, f in parity.items() if not f["sqnr_db"] >= FP16_MIN_SQNR_DB]
    if agreement >= 1.0 - max_drop and not low:
        return
    if low:
        why = f"output {low[0][0]} has SQNR {low[0][1]:.1f} dB against fp32 (min {FP16_MIN_SQNR_DB:.0f} dB)"
    else:
        why = f"agreement with fp32 is {agreement:.3f} ({outcome.metric}), below {1.0 - max_drop:.3f}"
    raise EdgevisionError(f"fp16 breaks {name}: {why}, so nothing was written; keep fp32 or quantize to int8 instead.")


def _record_kept_float(result: QuantizeResult, kept: dict[str, str], say) -> None:
    """Add the post-processing nodes a quantizer kept in float to ``excluded``, and say why once."""
    if not kept:
        return
    result.excluded = list(dict.fromkeys([*result.excluded, *kept]))
    line = summary(kept)
    result.notes.append(line)
    say(line)


def _move_model(chosen: Path, output: Path) -> None:
    """Move the chosen file (and companions such as ``.bin``) to ``output``, each atomically."""
    output.parent.mkdir(parents=True, exist_ok=True)
    for part in sorted(chosen.parent.glob(chosen.stem + ".*")):
        target = output.with_suffix(part.suffix) if part.suffix != chosen.suffix else output
        copy_atomic(part, target)


def _result(source, quantizer, options, output: Path, outcome: BudgetResult | None, budget) -> QuantizeResult:
    result = QuantizeResult(
        output=output,
        source=source.path,
        source_model=source.name,
        backend=quantizer.name,
        precision=options.precision,
        source_bytes=model_bytes(source.path),
        output_bytes=model_bytes(output),
    )
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
    """p50 latency of float (on ONNX Runtime) and the variant here; a loud warning when the variant is slower.

    Float is not timed on OpenVINO from the source ONNX: a process that has run OpenVINO's ONNX
    reader crashes (SIGSEGV) when it later receives SIGTERM or SIGHUP.
    """
    feeds = calibration.holdout_feeds[0]
    float_runtime = "onnxruntime"
    times = compare_latency(
        {"fp32": (source.path, float_runtime), result.precision: (result.output, quantizer.runtime)},
        feeds,
        threads=threads,
    )
    result.latency_ms = {k: round(v, 2) for k, v in times.items()}
    result.latency_fp32_runtime = float_runtime
    say(
        f"p50 at {threads} threads: fp32 on {float_runtime} {times['fp32']:.1f} ms, "
        f"{result.precision} on {quantizer.runtime} {times[result.precision]:.1f} ms"
    )
    if times[result.precision] > times["fp32"]:
        result.warnings.append(
            f"{result.precision} is SLOWER than fp32 on this machine "
            f"({times[result.precision]:.1f} ms vs {times['fp32']:.1f} ms p50 at {threads} threads)"
        )


def _write_meta(result: QuantizeResult, source, quantizer, options, calibration, budget) -> None:
    meta = VariantMeta(
        source_model=source.name,
        source_sha256=sha256_file(source.path),
        runtime=quantizer.runtime,
        precision=options.precision,
        step="quantize",
        excluded=result.excluded,
        parity=result.parity,
        calibration=_calibration_record(calibration, options),
        agreement={
            "metric": result.metric,
            "value": result.agreement,
            "max_drop": budget,
            "met": result.budget_met,
            "attempts": result.attempts,
            "latency_ms_p50": result.latency_ms,
        },
        notes=list(result.notes) + list(result.warnings),
        card=source.card,
    )
    write_meta(result.output, meta)


def _calibration_record(calibration: CalibrationSet | None, options: QuantizeOptions) -> dict:
    record = {"method": options.method, "per_channel": options.per_channel, "backend_options": dict(options.extra)}
    if options.method == "percentile":
        record["percentile"] = options.percentile
    return {**record, **(calibration.description if calibration else {"images": 0})}
