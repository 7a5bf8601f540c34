"""``run_bench``: build every variant of a model, time each in its own process, score, report.

>>> import edgevision
>>> result = edgevision.bench("nanodet-m", variants="ort-fp32,openvino-int8", threads=(1, 2))  # doctest: +SKIP
>>> result.recommended, result.paths["html"]                                           # doctest: +SKIP
('openvino-int8', PosixPath('runs/bench/nanodet-m/report.html'))
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from edgevision.benchmark.data import (
    DataSet,
    check_data,
    load_data,
    match_annotations,
    parse_threads,
)
from edgevision.benchmark.harness import (
    TimingOptions,
    WorkerPool,
    WorkerTask,
    measure_overhead,
    time_variants,
)
from edgevision.benchmark.machine import (
    count_model_macs,
    machine_info,
    measure_peaks,
    versions,
)
from edgevision.benchmark.records import variant_record
from edgevision.benchmark.report import write_reports
from edgevision.benchmark.result import BenchResult
from edgevision.benchmark.score import score
from edgevision.benchmark.variants import (
    BenchSource,
    BuildOptions,
    Variant,
    build_variants,
    choose_variants,
    parse_variant_keys,
    resolve_bench_source,
    with_baseline,
)
from edgevision.bundles import is_bundle
from edgevision.checks import check_threads, input_file, media_input, output_folder
from edgevision.compare import (
    DEFAULT_MAX_DROP,
)
from edgevision.errors import EdgevisionError
from edgevision.models.card import card_request
from edgevision.zoo.assemble import resolve_model

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BenchOptions:
    """Everything a benchmark can be told; every field has a sensible default.

    >>> BenchOptions(variants="ort-fp32,openvino-int8", threads=(1, 2)).max_drop
    0.02
    """

    variants: str | None = None  # comma-separated keys, e.g. "ort-fp32,openvino-int8"; None: all installed
    threads: str | tuple[int, ...] = (2,)  # thread counts timed, e.g. (1, 2) or "1,2"
    data: str | tuple[str, ...] | None = None  # images, folders, globs, videos scored; None: sample photos + frames
    annotations: Path | None = None  # COCO JSON of the data images: real AP against ground truth
    calib: str | None = None  # int8 calibration: folder, glob or video (default: the sample video)
    calib_count: int = 64
    max_drop: float = DEFAULT_MAX_DROP  # largest agreement drop of the recommended variant
    data_count: int = 16  # images (or video frames) scored for accuracy
    timing: TimingOptions = TimingOptions()
    weights: Path | None = None  # checkpoint of a PyTorch zoo model
    random_weights: bool = False
    card: str | Path | dict | None = None  # a model card file or card fields for a model file (see edgevision.load)
    measure_peak: bool = True


# ----------------------------------------------------------------------------- the run


def zoo_task(target) -> str | None:
    """The task of a resolved zoo model (its default data depends on it); None for a file."""
    from edgevision.zoo.assemble import processor_for

    return None if isinstance(target, Path) else getattr(processor_for(target.name), "task", None)


def run_bench(
    model: str, *, output: Path | None = None, options: BenchOptions = BenchOptions(), progress: Progress | None = None
) -> BenchResult:
    """Benchmark ``model`` (zoo name or ONNX file) across variants; write results and reports.

    A deploy bundle is timed as it is, against the latency it recorded where it was built
    (``edgevision.benchmark.bundle``).

    Writes ``results.json``, ``report.md`` and ``report.html`` into ``output`` (default
    ``runs/bench/<model>/``).
    """
    say = progress or logger.info
    if is_bundle(Path(model)):
        from edgevision.benchmark.bundle import run_bundle_bench

        return run_bundle_bench(Path(model), output=output, options=options, progress=say)
    thread_counts = check_bench(model, output, options)
    variants, data, annotations = options.variants, options.data, options.annotations
    target = resolve_model(model)  # a broken model file is one sentence before the data is read
    dataset = load_data(data, options.data_count, task=zoo_task(target))
    coco = match_annotations(annotations, dataset.names) if annotations else None
    source = resolve_bench_source(
        model, weights=options.weights, random_weights=options.random_weights, card=card_request(options.card)
    )
    keys = with_baseline(choose_variants(variants, source))
    build = BuildOptions(options.calib, options.calib_count, options.max_drop, max(thread_counts))
    built, failures = build_variants(source, keys, build, progress=say)
    if not built:
        raise EdgevisionError(f"no variant of {source.label} could be built: {'; '.join(failures.values())}")
    result, predictions = _measure(source, built, thread_counts, dataset, options, say)
    result.failures.update(failures)
    score(result, predictions, coco, source, max_drop=options.max_drop, threads=max(thread_counts))
    result.settings.update(_settings(variants, thread_counts, data, annotations, options, len(dataset.images)))
    result.paths = write_reports(result, Path(output) if output else Path("runs/bench") / source.slug)
    return result


def check_bench(model: str, output: Path | None, options: BenchOptions) -> tuple[int, ...]:
    """The thread counts to time; raise, before any work, for a bad option, input or report folder."""
    thread_counts = parse_threads(options.threads)
    check_threads(thread_counts)
    parse_variant_keys(options.variants)
    check_data(options.data)
    if options.calib is not None:
        media_input(options.calib, what="calibration images")
    if options.annotations is not None:
        input_file(options.annotations, what="annotations file")
    output_folder(Path(output) if output else Path("runs/bench") / Path(model).stem, what="the report folder")
    return thread_counts


def _settings(variants, threads, data, annotations, options: BenchOptions, images: int) -> dict:
    timing = asdict(options.timing)
    return {
        "variants": variants or "all available",
        "threads": list(threads),
        "data": data or "sample photos + video frames",
        "data_images": images,
        "annotations": str(annotations) if annotations else None,
        "calib": options.calib or "frames of the sample video vtest.avi",
        "calib_count": options.calib_count,
        "max_drop": options.max_drop,
        "timing": timing,
    }


def _measure(
    source: BenchSource,
    built: list[Variant],
    threads: tuple[int, ...],
    dataset: DataSet,
    options: BenchOptions,
    say: Progress,
) -> tuple[BenchResult, dict]:
    """Time every variant at every thread count in worker processes; collect predictions."""
    tasks = [
        WorkerTask(v.key, v.path, v.kind.runtime, t, source.source_model, source.card or None, v.kind.inference)
        for v in built
        for t in threads
    ]
    predictions: dict[str, dict] = {}
    overhead: dict = {}

    def extra(pool: WorkerPool) -> None:
        predictions.update(_predict_all(pool, built, threads[0], dataset, say))
        overhead.update(_overhead(pool, built, max(threads), options.timing, say))

    peak = measure_peaks(threads, say) if options.measure_peak else {}
    say(f"timing {len(tasks)} worker(s): {options.timing.rounds} rounds")
    timings = time_variants(tasks, dataset.images[0], options.timing, progress=say, extra=extra)
    peak = measure_peaks(threads, say, before=peak) if options.measure_peak else {}
    compute = count_model_macs(source)
    records = [variant_record(v, timings, threads, compute["macs"], peak, source) for v in built]
    result = BenchResult(source.label, records, None, machine_info(), {"versions": versions()}, peak, overhead, compute)
    result.showcase = {key: p["showcase"] for key, p in predictions.items() if p.get("showcase")}
    result.showcase_image = dataset.images[0]
    return result, predictions


def _predict_all(pool: WorkerPool, built: list[Variant], threads: int, dataset: DataSet, say: Progress) -> dict:
    """Each variant's predictions on the data images, from its worker at ``threads``."""
    folder = pool.folder
    images = folder / "data.pkl"
    with open(images, "wb") as f:
        pickle.dump(dataset.images, f)
    out = {}
    for variant in built:
        task_id = f"{variant.key}@{threads}"
        if pool.timings[task_id].error:
            continue
        say(f"accuracy: {variant.key} on {len(dataset.images)} images")
        target = folder / f"{variant.key}.pred.pkl"
        try:
            pool.workers[task_id].call("predict", images=str(images), out=str(target))
        except EdgevisionError as exc:
            pool.timings[task_id].error = str(exc)
            continue
        with open(target, "rb") as f:
            out[variant.key] = pickle.load(f)
    return out


def _overhead(pool: WorkerPool, built: list[Variant], threads: int, timing: TimingOptions, say: Progress) -> dict:
    """Harness overhead against a bare ``session.run`` loop, on the ONNX Runtime fp32 worker."""
    task_id = f"ort-fp32@{threads}"
    if task_id not in pool.workers or pool.timings[task_id].error:
        return {}
    say("measuring harness overhead against a bare session.run loop")
    try:
        return measure_overhead(pool.workers[task_id], timing)
    except EdgevisionError as exc:
        logger.warning("overhead not measured: %s", exc)
        return {}


__all__ = [
    "BenchOptions",
    "BenchResult",
    "TimingOptions",
    "run_bench",
    "parse_threads",
    "load_data",
    "match_annotations",
]
