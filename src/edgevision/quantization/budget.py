"""The accuracy budget: quantize, measure agreement with float, keep the worst layers in float.

>>> judge = AgreementJudge(src, calib, NanoDetProcessor())  # doctest: +SKIP
>>> result = run_budget(src, quantizer=get_quantizer("ort"), options=QuantizeOptions(),
...                     calibration=calib, judge=judge, max_drop=0.02, workdir=tmp)  # doctest: +SKIP
>>> [(a.excluded_count, round(a.agreement, 3)) for a in result.attempts]  # doctest: +SKIP
[(0, 0.539), (1, 0.71), (2, 0.79), (4, 0.97)]

When the default misses, the quantizer's ``repair_options`` (other whole-model settings) are
tried before any layer is kept float, and the better settings carry on.

Agreement is task-level, on held-out images the calibration never saw: detection mAP or
pose OKS AP with the float model's predictions as ground truth, mean output cosine for
models without a decoder. When ``1 - agreement`` exceeds ``max_drop``, layers are ranked
once by the noise they add (by the quantizer itself where it can measure it, as LiteRT's
QuantizationDebugger does; else by ``edgevision.quantization.sensitivity.rank_by_output``:
the noise each layer, alone in int8, puts on the model's outputs, which ranks for every
backend) and excluded
first the output head (the last weighted layers and the activations after them), then the
head plus growing batches of the noisiest other layers (1, 2, 4, 8 ..., a handful of
attempts in all) until the budget holds or the candidates run out, then two bisection
steps between the last count that missed and the first that held; the best attempt is
kept either way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgevision.compare import (
    evaluation_processor,
    metric_name,
    model_bytes,
    pair_outputs,
    stack_outputs,
    task_agreement,
    tensor_agreement,
)
from edgevision.models.base import Processor
from edgevision.quantization.base import Feeds, QuantizeOptions, Quantizer
from edgevision.quantization.calibration import CalibrationSet
from edgevision.quantization.sensitivity import (
    WEIGHTED_OPS,
    LayerSensitivity,
    exclusion_unit,
    head_units,
    rank_by_output,
    unique,
)

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]

BISECT_STEPS = 2  # attempts spent narrowing the float layers once the budget holds


@dataclass
class Attempt:
    """One quantized variant tried: which layers stayed float and what it measured."""

    excluded: list[str]
    agreement: float
    size_bytes: int
    path: Path
    settings: dict = field(default_factory=dict)  # the quantizer's extra options it was made with
    notes: list[str] = field(default_factory=list)  # the quantizer's account of this attempt
    kept_float: dict[str, str] = field(default_factory=dict)  # layers the quantizer kept float by itself

    @property
    def excluded_count(self) -> int:
        return len(self.excluded)

    def to_dict(self) -> dict:
        record = {"excluded": self.excluded_count, "agreement": round(self.agreement, 4), "bytes": self.size_bytes}
        return {**record, "settings": self.settings} if self.settings else record


@dataclass
class BudgetResult:
    """Every attempt, the one chosen, and whether it holds the budget."""

    attempts: list[Attempt]
    best: Attempt
    met: bool
    metric: str
    ranking: list[LayerSensitivity] = field(default_factory=list)
    ranked_by: str = ""  # how ``ranking`` was measured, for the metadata's notes


# ----------------------------------------------------------------------------- agreement


class AgreementJudge:
    """Scores a model file by its task-level agreement with a reference on held-out inputs."""

    def __init__(self, reference: Path, calibration: CalibrationSet, processor: Processor | None, *, threads: int = 2):
        self.calibration = calibration
        self.processor = evaluation_processor(processor)
        self.threads = threads
        self._reference_outputs = run_model(reference, "onnxruntime", calibration.holdout_feeds, threads=threads)
        self._reference = self._decode(self._reference_outputs)

    @property
    def metric(self) -> str:
        return metric_name(self.processor.task if self.processor else "raw")

    def __call__(self, model: Path, runtime: str) -> float:
        outputs = run_model(model, runtime, self.calibration.holdout_feeds, threads=self.threads)
        if self.processor is None:
            return task_agreement("raw", self._reference_outputs, outputs)
        return task_agreement(self.processor.task, self._reference, self._decode(outputs))

    def parity(self, model: Path, runtime: str) -> dict[str, dict[str, float]]:
        """Per-output cosine / SQNR / max abs diff of ``model`` against the reference."""
        return self.parity_of(run_model(model, runtime, self.calibration.holdout_feeds, threads=self.threads))

    def parity_of(self, outputs: list[dict[str, np.ndarray]]) -> dict[str, dict[str, float]]:
        if not outputs:
            return {}
        ref, cand = pair_outputs(stack_outputs(self._reference_outputs), stack_outputs(outputs))
        return tensor_agreement(ref, cand)

    def _decode(self, outputs: list[dict[str, np.ndarray]]) -> list:
        transforms = self.calibration.holdout_transforms
        return [self.processor.decode(o, t) for o, t in zip(outputs, transforms)] if self.processor else []


def run_model(model: Path, runtime: str, feeds: Sequence[Feeds], *, threads: int = 2) -> list[dict[str, np.ndarray]]:
    """Outputs of ``model`` on ``runtime`` for every feed."""
    from edgevision.backends import create_backend

    backend = create_backend(runtime, model, threads=threads)
    return [backend.run(_fit_feeds(backend, f)) for f in feeds]


def _fit_feeds(backend, feeds: Feeds) -> Feeds:
    """Rename a single input to the backend's input name (converters may rename inputs)."""
    if len(feeds) == 1 and len(backend.inputs) == 1:
        return {backend.inputs[0].name: next(iter(feeds.values()))}
    return feeds


# ----------------------------------------------------------------------------- the loop


def run_budget(
    source: Path,
    *,
    quantizer: Quantizer,
    options: QuantizeOptions,
    calibration: CalibrationSet,
    judge: AgreementJudge,
    max_drop: float,
    workdir: Path,
    repair: bool = True,
    progress: Progress | None = None,
) -> BudgetResult:
    """Quantize ``source``; while the drop exceeds ``max_drop`` (and ``repair``), keep more layers in float."""
    say = progress or logger.info
    trial = _Trial(source, quantizer, options, calibration, judge, workdir)
    attempts: list[Attempt] = []
    for settings in faster_settings(quantizer, options) if repair else ():
        attempts.append(trial.run(list(options.exclude), settings))
        say(f"all layers int8, {_describe(settings)}: agreement {attempts[-1].agreement:.3f} ({judge.metric})")
        if _meets(attempts[-1], max_drop):
            return BudgetResult(attempts, attempts[-1], True, judge.metric)
    first = trial.run(list(options.exclude))
    attempts.append(first)
    say(f"all layers {options.precision}: agreement {first.agreement:.3f} ({judge.metric})")
    ranking: list[LayerSensitivity] = []
    if _meets(first, max_drop) or options.precision != "int8" or not repair:
        return BudgetResult(attempts, first, _meets(first, max_drop), judge.metric)
    # Other whole-model settings (the quantizer's repair options) before any layer is float;
    # the best of them carries on.
    for extra in repair_settings(quantizer, options):
        attempts.append(trial.run(list(options.exclude), extra))
        say(f"all layers int8, {_describe(extra)}: agreement {attempts[-1].agreement:.3f} ({judge.metric})")
        if _meets(attempts[-1], max_drop):
            return BudgetResult(attempts, attempts[-1], True, judge.metric)
    # Layers are kept float on top of the settings that agreed best in all int8, the faster
    # ones on a tie (base_attempt).
    base_int8 = base_attempt(attempts)
    base = base_int8.settings
    if not quantizer.can_exclude:
        say(f"{quantizer.name} cannot keep layers in float, so the budget cannot be repaired on this backend")
        return BudgetResult(attempts, choose(attempts, max_drop), False, judge.metric)
    ranking = trial.rank(base_int8)
    say(f"ranked {len(ranking)} layers by added noise; worst: {', '.join(r.name for r in ranking[:3])}")
    if base:
        say(f"keeping layers float with {_describe(base)}, which agreed best in all int8 (or within {TIE} of it)")
    graph = trial.graph()

    def attempt_with(count: int) -> Attempt:
        attempt = trial.run(unique(list(options.exclude) + exclusion_for(graph, ranking, count)), base)
        attempts.append(attempt)
        say(
            f"{attempt.excluded_count} layers float: agreement {attempt.agreement:.3f}, {attempt.size_bytes / 1e6:.2f} MB"
        )
        return attempt

    # Body layers float: the head alone (0), then 1, 2, 4 ... until the budget holds; then
    # bisect between the last count that missed and the first that held, since the step
    # from 32 to 64 layers can overshoot by far (float layers cost speed).
    failed = -1 if head_units(graph) else 0  # -1: nothing float (the first attempt) missed
    for count in ([0] if failed < 0 else []) + batch_sizes(len(body_layers(graph, ranking))):
        if _meets(attempt_with(count), max_drop):
            passed = count
            for _ in range(BISECT_STEPS):
                if passed - failed <= 1:
                    break
                middle = (failed + passed) // 2
                if _meets(attempt_with(middle), max_drop):
                    passed = middle
                else:
                    failed = middle
            break
        failed = count
    best = choose(attempts, max_drop)
    return BudgetResult(attempts, best, _meets(best, max_drop), judge.metric, ranking, getattr(trial, "ranked_by", ""))


# Agreements this close are a tie: pose OKS AP over 16 people moves in steps of about 0.006.
TIE = 0.005


def base_attempt(attempts: Sequence[Attempt]) -> Attempt:
    """The all-int8 attempt to keep layers float on top of: the first (the faster settings are
    tried first) whose agreement ties the best within ``TIE``.

    On MoveNet Lightning (OpenVINO) PERFORMANCE agreed 0.9482 and MIXED 0.9486: the exclusions
    then ran on MIXED, whose zero-point compensation costs run time, for a difference the
    metric cannot tell from noise.
    """
    best = max(a.agreement for a in attempts)
    return next(a for a in attempts if a.agreement >= best - TIE)


def faster_settings(quantizer: Quantizer, options: QuantizeOptions) -> tuple[dict, ...]:
    """The quantizer's faster int8 settings to try before its default, unless the user chose any of them.

    On OpenVINO the PERFORMANCE preset (symmetric activations) needs no zero-point
    compensation: yolox-nano int8 ran 7.9 ms against 9.6 ms with MIXED in one run.
    """
    if options.precision != "int8":
        return ()
    return tuple(s for s in getattr(quantizer, "faster_options", ()) if not set(s) & set(options.extra))


def repair_settings(quantizer: Quantizer, options: QuantizeOptions) -> tuple[dict, ...]:
    """The quantizer's other int8 settings to try when its default misses the budget (before
    keeping layers float), unless the user chose any of them; the better of them and the
    default is kept for the exclusion attempts.

    OpenVINO's is NNCF's overflow fix on every layer (7-bit weights) with its full bias
    correction: on CPUs without VNNI, oneDNN's int8 convolutions clamp neighbouring products
    to int16 (see ``edgevision.quantization.saturation``), which NNCF's default fixes for the
    first layer only.
    """
    if options.precision != "int8":
        return ()
    return tuple(s for s in getattr(quantizer, "repair_options", ()) if not set(s) & set(options.extra))


def _describe(settings: dict) -> str:
    return ", ".join(f"{key} {value}" for key, value in settings.items())


def exclusion_plan(graph, ranking: Sequence[LayerSensitivity]) -> list[list[str]]:
    """The exclusion lists to try, in order: the output head, then the head plus growing
    batches of the noisiest other weighted layers (1, 2, 4 ... of them).

    Every layer goes with the activation after it (``exclusion_unit``), so the tensor
    between them really stays float. The head comes first because its noise lands directly
    on the scores: on NanoDet-m one conv per stride makes 80 class and 44 box-distribution
    channels that share one activation scale until they are split.
    """
    head = head_units(graph)
    plan = [head] if head else []
    return plan + [exclusion_for(graph, ranking, count) for count in batch_sizes(len(body_layers(graph, ranking)))]


def body_layers(graph, ranking: Sequence[LayerSensitivity]) -> list[str]:
    """The ranked weighted layers outside the output head, worst first."""
    head = set(head_units(graph))
    return [r.name for r in ranking if r.op_type in WEIGHTED_OPS and r.name not in head]


def exclusion_for(graph, ranking: Sequence[LayerSensitivity], count: int) -> list[str]:
    """The output head plus the ``count`` worst body layers, each with its activation."""
    body = body_layers(graph, ranking)[:count]
    return unique(head_units(graph) + [name for layer in body for name in exclusion_unit(graph, layer)])


def batch_sizes(total: int) -> list[int]:
    """Growing exclusion counts: 1, 2, 4, 8 ... and finally all ``total``.

    >>> batch_sizes(10)
    [1, 2, 4, 8, 10]
    """
    sizes, n = [], 1
    while n < total:
        sizes.append(n)
        n *= 2
    return sizes + [total] if total else sizes


def _meets(attempt: Attempt, max_drop: float) -> bool:
    return 1.0 - attempt.agreement <= max_drop + 1e-9


def choose(attempts: list[Attempt], max_drop: float) -> Attempt:
    """The smallest attempt within budget, else the one that agrees best."""
    within = [a for a in attempts if _meets(a, max_drop)]
    if within:
        return min(within, key=lambda a: (a.size_bytes, -a.agreement))
    return max(attempts, key=lambda a: (a.agreement, -a.size_bytes))


class _Trial:
    """Quantizes with a given exclusion list into ``workdir`` and scores the result."""

    def __init__(self, source, quantizer, options, calibration, judge, workdir) -> None:
        self.source, self.quantizer, self.options = source, quantizer, options
        self.calibration, self.judge, self.workdir = calibration, judge, workdir
        self.count = 0
        self._layers: list[str] | None = None
        self.ranked_by = ""

    def run(self, exclude: list[str], settings: dict | None = None) -> Attempt:
        """Quantize with ``exclude`` (names the backend has no layer for are left out) and ``settings``
        (extra options over the user's), and score."""
        known = set(self.layers())
        exclude = [name for name in exclude if name in known or name in self.options.exclude]
        self.count += 1
        path = self.workdir / f"attempt{self.count}{self.quantizer.suffix}"
        options = replace(self.options, exclude=tuple(exclude), extra={**self.options.extra, **(settings or {})})
        self.quantizer.quantize(self.source, path, options=options, calibration=self.calibration.feeds)
        agreement = self.judge(path, self.quantizer.runtime)
        q = self.quantizer
        return Attempt(
            list(exclude),
            agreement,
            model_bytes(path),
            path,
            dict(settings or {}),
            list(getattr(q, "notes", [])),
            dict(getattr(q, "kept_float", {})),
        )

    def layers(self) -> list[str]:
        """Source node names the backend can keep in float (cached)."""
        if self._layers is None:
            self._layers = self.quantizer.float_candidates(self.source)
        return self._layers

    def graph(self):
        """The source graph (no weights), whose node names ``exclude`` uses."""
        import onnx

        return onnx.load(str(self.source), load_external_data=False).graph

    def rank(self, first: Attempt) -> list[LayerSensitivity]:
        """Layers by added noise: the quantizer's own ranking when it has one (``rank_layers``),
        else by the noise each layer alone in int8 puts on the outputs (``rank_by_output``)."""
        from edgevision.quantization.ort import OrtQuantizer

        if hasattr(self.quantizer, "rank_layers"):
            feeds = self.calibration.feeds
            self.ranked_by = f"{self.quantizer.name}'s own per-layer noise"
            return self.quantizer.rank_layers(
                self.source, options=self.options, calibration=feeds, exclude=first.excluded
            )
        # Ranked by what each layer alone in int8 does to the outputs, not by the SQNR of its
        # own tensor: MoveNet Lightning's most harmful layer adds little noise where it is.
        proxy = self.quantizer if isinstance(self.quantizer, OrtQuantizer) else OrtQuantizer()
        feeds = self.calibration.feeds[:8]
        self.ranked_by = f"the noise each alone in int8 puts on the outputs ({len(feeds)} calibration inputs)"
        return rank_by_output(
            proxy.prepare(self.source), feeds, skip=first.excluded, per_channel=self.options.per_channel
        )


# ----------------------------------------------------------------------------- speed


def compare_latency(
    models: dict[str, tuple[Path, str]], feeds: Feeds, *, threads: int = 2, rounds: int = 5, runs: int = 10
) -> dict[str, float]:
    """p50 milliseconds of each ``label: (file, runtime)`` on ``feeds``.

    All models are loaded in this process, warmed up, then timed in alternating rounds so
    drift hits them alike. Timing each in its own process is more exact; this is the quick
    check that int8 is not slower than float here.
    """
    from edgevision.backends import create_backend

    backends = {label: create_backend(runtime, path, threads=threads) for label, (path, runtime) in models.items()}
    times: dict[str, list[float]] = {label: [] for label in backends}
    for backend in backends.values():
        for _ in range(3):
            backend.run(_fit_feeds(backend, feeds))
    for _ in range(rounds):
        for label, backend in backends.items():
            fitted = _fit_feeds(backend, feeds)
            for _ in range(runs):
                start = time.perf_counter()
                backend.run(fitted)
                times[label].append((time.perf_counter() - start) * 1e3)
    return {label: float(np.median(values)) for label, values in times.items()}
