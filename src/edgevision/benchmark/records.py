"""The results.json record of one variant: size, timing per thread count, memory, share of the peak."""

from __future__ import annotations

import numpy as np

from edgevision.benchmark.harness import Timing, summarize
from edgevision.benchmark.variants import BenchSource, Variant
from edgevision.compare import model_bytes

MAX_SAMPLES_KEPT = 2000  # latency samples kept per variant and thread count in results.json


def variant_record(
    variant: Variant, timings: dict[str, Timing], threads: tuple[int, ...], macs: int, peak: dict, source: BenchSource
) -> dict:
    """The results.json record of one variant."""
    per_thread = {
        str(t): _thread_figures(timings[f"{variant.key}@{t}"], variant, macs, peak.get(str(t), {})) for t in threads
    }
    errors = [f["error"] for f in per_thread.values() if f.get("error")]
    memory = [f["peak_rss_mb"] for f in per_thread.values() if f.get("peak_rss_mb")]
    reported = [timings[f"{variant.key}@{t}"].inference_precision for t in threads]
    return {
        "variant": variant.key,
        "label": variant.kind.label,
        "runtime": variant.kind.runtime,
        "precision": variant.kind.precision,
        "inference_precision": next((p for p in reported if p), None),  # as the compiled model reports it
        "settings": variant.kind.settings,
        "runtime_settings": {str(t): timings[f"{variant.key}@{t}"].settings for t in threads},
        "file": str(variant.path),
        "size_bytes": model_bytes(variant.path),
        "cached": variant.cached,
        "build_s": round(variant.build_s, 1),
        "macs": macs,
        "peak_rss_mb": min(memory) if memory else None,
        "threads": per_thread,
        "random_weights": source.random_weights,
        "notes": variant.meta.get("notes", []),
        "excluded_layers": len(variant.meta.get("excluded", [])),
        "error": errors[0] if errors else None,
        "baseline": False,
        "agreement": None,
        "agreement_metric": None,
        "coco": None,
    }


def _thread_figures(timing: Timing, variant: Variant, macs: int, peak: dict) -> dict:
    figures = {
        "load_s": timing.load_s,
        "first_ms": timing.first_ms,
        "latency": summarize(timing.ms),
        "pipeline": summarize(timing.pipeline_ms),
        "peak_rss_mb": timing.peak_rss_mb,
        "error": timing.error,
        "samples_ms": _thin(timing.ms),
        "pid": timing.pid,
    }
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
