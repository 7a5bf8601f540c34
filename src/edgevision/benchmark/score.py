"""Scoring a benchmark: agreement of every variant with the fp32 baseline, COCO AP, the recommendation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgevision.benchmark.result import BenchResult
from edgevision.benchmark.variants import FP32_BASELINES, BenchSource
from edgevision.compare import coco_ap_against_ground_truth, metric_name, task_agreement


def score(result: BenchResult, predictions: dict, coco, source: BenchSource, *, max_drop: float, threads: int) -> None:
    """Agreement with the fp32 baseline, COCO AP when annotations were given, the recommendation."""
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
    task = reference.get("task", "raw")
    if raw_only or task not in ("detection", "pose"):
        return task_agreement("raw", reference["outputs"], candidate["outputs"]), metric_name("raw")
    return task_agreement(task, reference["predictions"], candidate["predictions"]), metric_name(task)


def _coco_ap(predictions: list, coco) -> dict:
    gt, indices, image_ids = coco
    return coco_ap_against_ground_truth([predictions[i] for i in indices], gt, image_ids)


def p50(record: dict, threads: int | str) -> float | None:
    """The record's p50 latency (ms) at ``threads``, or None when not measured."""
    return record.get("threads", {}).get(str(threads), {}).get("latency", {}).get("p50")


def recommend(records: Sequence[dict], *, max_drop: float, threads: int) -> str | None:
    """The fastest variant (p50 at ``threads``) whose agreement is within ``max_drop`` of fp32.

    When none is within budget (or nothing was scored) the fp32 baseline is recommended.
    """
    baseline = next((r for r in records if r.get("baseline")), None)
    floor = (baseline.get("agreement") or 1.0) - max_drop - 1e-9 if baseline else 1.0 - max_drop - 1e-9
    within = [
        r
        for r in records
        if not r.get("error")
        and r.get("agreement") is not None
        and r["agreement"] >= floor
        and p50(r, threads) is not None
    ]
    if within:
        return min(within, key=lambda r: p50(r, threads))["variant"]
    return baseline["variant"] if baseline else None


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats, by (lower latency, higher accuracy), fastest first.

    A point is dominated when another is at least as fast and at least as accurate, and
    strictly better in one of the two.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -np.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


# ----------------------------------------------------------------------------- text
