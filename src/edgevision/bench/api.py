"""``run_bench``: build every variant of a model, time each in its own process, score, report.

>>> from edgevision.bench.api import run_bench
>>> result = run_bench("nanodet-m", variants="ort-fp32,openvino-int8", threads=(1, 2))  # doctest: +SKIP
>>> result.recommended, result.paths["html"]                                           # doctest: +SKIP
('openvino-int8', PosixPath('runs/bench/nanodet-m/report.html'))
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgevision.bench.harness import Timing, TimingOptions, WorkerPool, WorkerTask, measure_overhead, summarize, time_variants
from edgevision.bench.variants import FP32_BASELINES, BenchSource, BuildOptions, Variant, build_variants, choose_variants, resolve_bench_source, with_baseline
from edgevision.errors import EdgevisionError

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]
DEFAULT_VIDEO_FRAMES = 11
MAX_SAMPLES_KEPT = 2000  # latency samples kept per variant and thread count in results.json


@dataclass(frozen=True)
class BenchOptions:
    """The rarer knobs of a benchmark; every field has a sensible default."""

    calib: str | None = None  # int8 calibration: folder, glob or video (default: the sample video)
    calib_count: int = 64
    max_drop: float = 0.02  # largest agreement drop of the recommended variant
    data_count: int = 16  # images (or video frames) scored for accuracy
    timing: TimingOptions = TimingOptions()
    weights: Path | None = None  # checkpoint of a PyTorch zoo model
    random_weights: bool = False
    measure_peak: bool = True


@dataclass
class BenchResult:
    """Everything a benchmark measured, and where it was written."""

    model: str
    records: list[dict]
    recommended: str | None
    machine: dict
    settings: dict
    peak: dict = field(default_factory=dict)
    overhead: dict = field(default_factory=dict)
    compute: dict = field(default_factory=dict)
    failures: dict = field(default_factory=dict)
    showcase: dict = field(default_factory=dict)  # variant key -> {"prediction": ..., "heatmap": BGR | None}
    showcase_image: np.ndarray | None = None  # the real image every variant decoded, BGR
    paths: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        settings = {k: v for k, v in self.settings.items() if k != "versions"}
        return {"model": self.model, "recommended": self.recommended, "machine": self.machine,
                "versions": self.settings.get("versions", {}), "settings": settings,
                "peak": self.peak, "harness_overhead": self.overhead, "compute": self.compute,
                "failures": self.failures, "variants": self.records}  # fmt: skip


# ----------------------------------------------------------------------------- inputs


def parse_threads(text: str | tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """Thread counts from ``"1,2"``; zero, negative or non-numbers are a clear error.

    >>> parse_threads("1,2")
    (1, 2)
    """
    parts = [str(p).strip() for p in (text.split(",") if isinstance(text, str) else text)]
    try:
        values = tuple(int(p) for p in parts if p)
    except ValueError:
        raise EdgevisionError(f"--threads takes whole numbers separated by commas, like 1,2; got '{text}'.") from None
    if not values or min(values) < 1:
        raise EdgevisionError(f"--threads values must be 1 or more, like 1,2; got '{','.join(parts)}'.")
    return tuple(dict.fromkeys(values))


@dataclass
class DataSet:
    """Images scored for accuracy: BGR arrays and the names (file names) they came from."""

    images: list[np.ndarray]
    names: list[str]


def load_data(data: str | None, count: int) -> DataSet:
    """``count`` images of ``data`` (folder, glob or video); default: the sample photos and video frames."""
    from edgevision.quantize.calibration import read_images

    if data is not None:
        images, names = read_images(data, count, min_images=1)
        return DataSet(images, names)
    from edgevision.pipeline.sources import read_image
    from edgevision.samples import DEFAULT_VIDEO, PHOTOS, sample_path

    images = [read_image(sample_path(name)) for name in PHOTOS]
    frames, frame_names = read_images(str(sample_path(DEFAULT_VIDEO)), max(count - len(images), 0) or 1, min_images=1)
    return DataSet(images + frames, list(PHOTOS) + frame_names)


def match_annotations(annotations: Path, names: list[str]) -> tuple[dict, list[int], list[int]]:
    """The COCO file, and (data index, image id) pairs of the images it annotates, by file name.

    Raises a clear error when the file is unreadable, not COCO, or annotates none of the images.
    """
    try:
        gt = json.loads(Path(annotations).read_text())
    except (OSError, ValueError) as exc:
        raise EdgevisionError(f"cannot read annotations {annotations}: {exc}.") from None
    if not isinstance(gt, dict) or not isinstance(gt.get("images"), list) or "annotations" not in gt:
        raise EdgevisionError(f"{annotations} is not a COCO annotations file (it needs 'images' and 'annotations').")
    by_name = {Path(str(im.get("file_name", ""))).name: im["id"] for im in gt["images"]}
    pairs = [(i, by_name[Path(n).name]) for i, n in enumerate(names) if Path(n).name in by_name]
    if not pairs:
        raise EdgevisionError(
            f"{annotations} annotates none of the {len(names)} images given with --data "
            f"(matched by file name, e.g. {Path(names[0]).name}); give the images the annotations describe."
        )
    return gt, [i for i, _ in pairs], [image_id for _, image_id in pairs]


# ----------------------------------------------------------------------------- machine


def machine_info() -> dict:
    """CPU model, core counts, notable instruction-set flags, OS and Python."""
    flags, model = set(), platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", platform.machine()):
                model = line.split(":", 1)[1].strip()
            elif line.startswith(("flags", "Features")) and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    notable = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16", "avx_vnni", "asimddp", "neon")
    return {"cpu": model or platform.machine(), "logical_cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
            "flags": [f for f in notable if f in flags], "os": platform.platform(), "python": platform.python_version()}  # fmt: skip


def versions() -> dict:
    from edgevision.variants import tool_versions

    return tool_versions()


# ----------------------------------------------------------------------------- compute


def count_model_macs(source: BenchSource) -> dict:
    """MACs per inference: PyTorch's FlopCounterMode for PyTorch models, else the ONNX graph counter."""
    if source.pytorch:
        from edgevision.models.flops import count_macs
        from edgevision.zoo import get_spec
        from edgevision.zoo.pytorch import build_module

        spec = get_spec(source.label)
        module = build_module(spec, weights=source.weights, random_weights=source.weights is None)
        return {"macs": int(count_macs(module, spec.flops_input)), "method": "torch.utils.flop_counter (FLOPs / 2)"}
    from edgevision.inspect.graph import load_onnx, onnx_macs

    return {"macs": int(sum(onnx_macs(load_onnx(source.onnx)).values())),
            "method": "Conv/ConvTranspose/Gemm/MatMul MACs from the ONNX graph with shape inference"}  # fmt: skip


def measure_peaks(threads: tuple[int, ...], say: Progress, before: dict | None = None) -> dict:
    """GEMM peaks per thread count; with ``before`` (an earlier measurement) the best of both."""
    from edgevision.bench.peak import best_of, measure_peak

    peaks = {}
    for t in threads:
        say(f"measuring the GEMM peak at {t} thread(s)")
        peaks[str(t)] = best_of(measure_peak(threads=t), *([before[str(t)]] if before else []))
    return peaks


# ----------------------------------------------------------------------------- the run


def run_bench(
    model: str,
    *,
    variants: str | None = None,
    threads: str | tuple[int, ...] = (2,),
    data: str | None = None,
    annotations: Path | None = None,
    output: Path | None = None,
    options: BenchOptions = BenchOptions(),
    progress: Progress | None = None,
) -> BenchResult:
    """Benchmark ``model`` (zoo name or ONNX file) across variants; write results and reports.

    Writes ``results.json``, ``report.md`` and ``report.html`` into ``output`` (default
    ``runs/bench/<model>/``).
    """
    say = progress or logger.info
    thread_counts = parse_threads(threads)
    source = resolve_bench_source(model, weights=options.weights, random_weights=options.random_weights)
    keys = with_baseline(choose_variants(variants, source))
    dataset = load_data(data, options.data_count)
    coco = match_annotations(annotations, dataset.names) if annotations else None
    build = BuildOptions(options.calib, options.calib_count, options.max_drop, max(thread_counts))
    built, failures = build_variants(source, keys, build, progress=say)
    if not built:
        raise EdgevisionError(f"no variant of {source.label} could be built: {'; '.join(failures.values())}")
    result, predictions = _measure(source, built, thread_counts, dataset, options, say)
    result.failures.update(failures)
    _score(result, predictions, coco, source, max_drop=options.max_drop, threads=max(thread_counts))
    result.settings.update(_settings(variants, thread_counts, data, annotations, options, len(dataset.images)))
    from edgevision.bench.report import write_reports

    result.paths = write_reports(result, Path(output) if output else Path("runs/bench") / source.slug)
    return result


def _settings(variants, threads, data, annotations, options: BenchOptions, images: int) -> dict:
    timing = asdict(options.timing)
    return {"variants": variants or "all available", "threads": list(threads), "data": data or "sample photos + video frames",
            "data_images": images, "annotations": str(annotations) if annotations else None,
            "calib": options.calib or "frames of the sample video vtest.avi", "calib_count": options.calib_count,
            "max_drop": options.max_drop, "timing": timing}  # fmt: skip


def _measure(source: BenchSource, built: list[Variant], threads: tuple[int, ...], dataset: DataSet,
             options: BenchOptions, say: Progress) -> tuple[BenchResult, dict]:  # fmt: skip
    """Time every variant at every thread count in worker processes; collect predictions."""
    tasks = [WorkerTask(v.key, v.path, v.kind.runtime, t, source.source_model) for v in built for t in threads]
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
    records = [_record(v, timings, threads, compute["macs"], peak, source) for v in built]
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


def _record(variant: Variant, timings: dict[str, Timing], threads: tuple[int, ...], macs: int, peak: dict,
            source: BenchSource) -> dict:  # fmt: skip
    """The results.json record of one variant."""
    from edgevision.convert.parity import model_bytes

    per_thread = {str(t): _thread_figures(timings[f"{variant.key}@{t}"], variant, macs, peak.get(str(t), {})) for t in threads}
    errors = [f["error"] for f in per_thread.values() if f.get("error")]
    memory = [f["peak_rss_mb"] for f in per_thread.values() if f.get("peak_rss_mb")]
    return {"variant": variant.key, "label": variant.kind.label, "runtime": variant.kind.runtime,
            "precision": variant.kind.precision, "file": str(variant.path), "size_bytes": model_bytes(variant.path),
            "cached": variant.cached, "build_s": round(variant.build_s, 1), "macs": macs,
            "peak_rss_mb": min(memory) if memory else None, "threads": per_thread,
            "random_weights": source.random_weights, "notes": variant.meta.get("notes", []),
            "excluded_layers": len(variant.meta.get("excluded", [])), "error": errors[0] if errors else None,
            "baseline": False, "agreement": None, "agreement_metric": None, "coco": None}  # fmt: skip


def _thread_figures(timing: Timing, variant: Variant, macs: int, peak: dict) -> dict:
    figures = {"load_s": timing.load_s, "first_ms": timing.first_ms, "latency": summarize(timing.ms),
               "pipeline": summarize(timing.pipeline_ms), "peak_rss_mb": timing.peak_rss_mb, "error": timing.error,
               "samples_ms": _thin(timing.ms), "pid": timing.pid}  # fmt: skip
    p50 = figures["latency"].get("p50")
    if p50 and macs:
        figures["macs_per_s"] = macs / (p50 / 1e3)
        kind = "int8" if variant.kind.precision == "int8" else "fp32"
        peak_rate = peak.get(kind, {}).get("gmacs")
        figures["fraction_of_peak"] = figures["macs_per_s"] / (peak_rate * 1e9) if peak_rate else None
        figures["peak_kind"] = kind
    return figures


def _thin(ms: list[float]) -> list[float]:
    if len(ms) <= MAX_SAMPLES_KEPT:
        return [round(v, 4) for v in ms]
    idx = np.linspace(0, len(ms) - 1, MAX_SAMPLES_KEPT).astype(int)
    return [round(ms[i], 4) for i in idx]


# ----------------------------------------------------------------------------- accuracy


def _score(result: BenchResult, predictions: dict, coco, source: BenchSource, *, max_drop: float, threads: int) -> None:
    """Agreement with the fp32 baseline, COCO AP when annotations were given, the recommendation."""
    from edgevision.bench.report import recommend

    baseline = next((k for k in FP32_BASELINES if k in predictions), None)
    for record in result.records:
        record["baseline"] = record["variant"] == baseline
        mine = predictions.get(record["variant"])
        if mine is None or baseline is None:
            continue
        record["agreement"], record["agreement_metric"] = agreement(predictions[baseline], mine, source.random_weights)
        if coco is not None and mine["predictions"]:
            record["coco"] = _coco_ap(mine["predictions"], coco)
    result.recommended = recommend(result.records, max_drop=max_drop, threads=threads)


def agreement(reference: dict, candidate: dict, raw_only: bool = False) -> tuple[float, str]:
    """Task-level agreement of a variant's predictions with the baseline's (raw-output cosine without a task)."""
    from edgevision.bench.metrics import detection_agreement, mean_cosine, pose_agreement, stack_outputs, tensor_agreement

    task = reference.get("task", "raw")
    if raw_only or task not in ("detection", "pose"):
        ref, cand = pair_outputs(stack_outputs(reference["outputs"]), stack_outputs(candidate["outputs"]))
        return mean_cosine(tensor_agreement(ref, cand)), "mean output cosine vs fp32"
    if task == "detection":
        return detection_agreement(reference["predictions"], candidate["predictions"]), "detection mAP@[.5:.95] vs fp32"
    return pose_agreement(reference["predictions"], candidate["predictions"]), "pose OKS AP vs fp32"


def pair_outputs(ref: dict[str, np.ndarray], cand: dict[str, np.ndarray]) -> tuple[dict, dict]:
    """Pair outputs by name, else each reference output with an unused candidate of the same size.

    Converters rename outputs and may reorder them (onnx2tf), so order alone is not enough.
    """
    if set(ref) == set(cand):
        return ref, cand
    unused = dict(cand)
    pairs = {}
    for name, tensor in ref.items():
        match = next((k for k, v in unused.items() if v.size == tensor.size), None)
        if match is not None:
            pairs[name] = unused.pop(match)
    return {n: ref[n] for n in pairs}, pairs


def _coco_ap(predictions: list, coco) -> dict:
    from edgevision.bench.metrics import coco_ap_against_ground_truth

    gt, indices, image_ids = coco
    return coco_ap_against_ground_truth([predictions[i] for i in indices], gt, image_ids)


def timestamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def write_json(path: Path, payload: dict) -> Path:
    """Write ``payload`` as indented JSON (numpy scalars and paths converted)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=_json_default, allow_nan=True))
    return path


__all__ = ["BenchOptions", "BenchResult", "TimingOptions", "run_bench", "parse_threads", "load_data", "match_annotations"]
