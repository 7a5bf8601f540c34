"""Reproduce the talk's table on this machine: baseline vs every variant, ratios and sizes.

    python benchmarks/talk_table.py                       # all four models, 2 threads
    python benchmarks/talk_table.py --models nanodet-m --threads 1,2 --json runs/talk/table.json

openpose-body and yolox-nano run with seeded random weights (no registry package carries
their checkpoints; size and speed do not depend on the values, and agreement is then the
raw-output cosine); nanodet-m and movenet-lightning use their real weights. The baseline
is PyTorch fp32 eager for PyTorch models and ONNX Runtime fp32 otherwise. Each model is one
``edgevision bench`` run: every variant in its own worker process, rounds interleaved.
Targets are printed with the measured figures, never asserted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import date
from pathlib import Path

import edgevision
from edgevision.benchmark.api import (
    BenchOptions,
    BenchResult,
    TimingOptions,
    parse_threads,
)
from edgevision.benchmark.score import p50

MODELS: dict[str, dict] = {
    "openpose-body": {
        "random_weights": True,
        "variants": "torch-fp32,ort-fp32,ort-int8,openvino-fp32,openvino-bf16,openvino-int8",
    },
    "yolox-nano": {
        "random_weights": True,
        "variants": "torch-fp32,ort-fp32,ort-int8,openvino-fp32,openvino-bf16,openvino-int8,litert-fp32,litert-int8",
    },
    "nanodet-m": {
        "random_weights": False,
        "variants": "ort-fp32,ort-int8,openvino-fp32,openvino-bf16,openvino-int8,litert-fp32,litert-int8",
    },
    "movenet-lightning": {
        "random_weights": False,
        "variants": "ort-fp32,ort-int8,openvino-fp32,openvino-bf16,openvino-int8,litert-fp32,litert-int8",
    },
}
# A LiteRT full-int8 NanoDet-m made by hand (per-channel weights, its own calibration images,
# int8 input and output) ran 6.5 ms at 0.971 agreement on the machine these targets were set on.
HAND_TUNED_NANODET = (6.5, 0.971)
USABLE_INT8 = (0.98, 1.5)  # agreement with fp32, speed-up over the same runtime's fp32
HEADER = ["model", "weights", "variant", "size MB", "size ratio", "p50 ms", "speed-up", "agreement", "% of peak"]


def baseline_of(result: BenchResult) -> dict:
    """The PyTorch fp32 record when there is one, else ONNX Runtime fp32."""
    by_key = {r["variant"]: r for r in result.records}
    return by_key.get("torch-fp32") or by_key["ort-fp32"]


def rows_for(result: BenchResult, threads: int, random_weights: bool) -> list[dict]:
    """One row per variant: size and latency, and their ratios to the baseline."""
    base = baseline_of(result)
    rows = []
    for r in result.records:
        latency, base_latency = p50(r, threads), p50(base, threads)
        fraction = r["threads"].get(str(threads), {}).get("fraction_of_peak")
        rows.append(
            {
                "model": result.model,
                "weights": "random" if random_weights else "real",
                "variant": r["variant"],
                "baseline": r is base,
                "recommended": r["variant"] == result.recommended,
                "threads": threads,
                "size_mb": r["size_bytes"] / 1e6,
                "size_ratio": r["size_bytes"] / base["size_bytes"],
                "p50_ms": latency,
                "speedup": base_latency / latency if latency and base_latency else None,
                "agreement": r.get("agreement"),
                "agreement_metric": r.get("agreement_metric"),
                "fraction_of_peak": fraction,
                "precision": r["precision"],
            }
        )
    return rows


def _cell(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in rows:
        name = r["variant"] + (" (baseline)" if r["baseline"] else "") + (" ★" if r["recommended"] else "")
        lines.append(
            "| "
            + " | ".join(
                [
                    r["model"],
                    r["weights"],
                    name,
                    _cell(r["size_mb"], ".1f"),
                    _cell(r["size_ratio"], ".2f") + "×",
                    _cell(r["p50_ms"], ".1f"),
                    _cell(r["speedup"], ".2f") + "×",
                    _cell(r["agreement"], ".3f"),
                    _cell(r["fraction_of_peak"] and 100 * r["fraction_of_peak"], ".0f"),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


SPEEDUP_TARGETS = {"yolox-nano": 5.5, "openpose-body": 4.3}  # over PyTorch fp32; openpose: the int8/fp32 peak ratio
PEAK_TARGETS = {"yolox-nano": 0.30, "openpose-body": 0.80}  # best int8 variant's fraction of the int8 GEMM peak


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def targets(rows: list[dict], results: dict[str, BenchResult]) -> list[str]:
    """The targets next to what this run measured (reported, not asserted)."""
    out = []
    for model, target in SPEEDUP_TARGETS.items():
        mine = [r for r in rows if r["model"] == model and r["speedup"]]
        if mine:
            best = max(mine, key=lambda r: r["speedup"])
            out.append(
                f"{model}: best variant {best['variant']} p50 is {best['speedup']:.2f}x lower than PyTorch fp32 "
                f"at {best['threads']} threads (target >= {target}x): {_met(best['speedup'] >= target)}"
            )
    for model, target in PEAK_TARGETS.items():
        int8 = [r for r in rows if r["model"] == model and r["precision"] == "int8" and r["fraction_of_peak"]]
        if int8:
            best = max(int8, key=lambda r: r["fraction_of_peak"])
            out.append(
                f"{model}: best int8 ({best['variant']}) runs at {100 * best['fraction_of_peak']:.0f}% of the "
                f"measured int8 peak (target >= {100 * target:.0f}%): {_met(best['fraction_of_peak'] >= target)}"
            )
    if "nanodet-m" in results:
        out.append(_nanodet_target(rows))
    return out + [_int8_target(model, rows) for model in results]


def _nanodet_target(rows: list[dict]) -> str:
    nano = {r["variant"]: r for r in rows if r["model"] == "nanodet-m"}
    rec = next((r for r in nano.values() if r["recommended"]), None)
    if rec is None or rec["p50_ms"] is None:
        return "nanodet-m: no recommendation"
    ms, agreement = HAND_TUNED_NANODET
    got = rec["agreement"] or 0.0
    ok = (rec["p50_ms"] <= ms and got >= agreement) or (rec["p50_ms"] < ms and got >= 0.98)
    return (
        f"nanodet-m: recommended {rec['variant']} p50 {rec['p50_ms']:.1f} ms, agreement {got:.3f} "
        f"(target: the hand-tuned LiteRT int8 point, {ms} ms at {agreement}, or faster at >= 0.98): {_met(ok)}"
    )


def _int8_target(model: str, rows: list[dict]) -> str:
    """Is there an int8 variant within 0.98 agreement and 1.5x faster than its own runtime's fp32?"""
    mine = {r["variant"]: r for r in rows if r["model"] == model}
    usable = []
    for key, r in mine.items():
        fp32 = mine.get(key.replace("-int8", "-fp32"))
        if r["precision"] != "int8" or fp32 is None or not r["p50_ms"] or not fp32["p50_ms"]:
            continue
        ratio = fp32["p50_ms"] / r["p50_ms"]
        usable.append((ratio if (r["agreement"] or 0) >= USABLE_INT8[0] else 0.0, ratio, key, r["agreement"] or 0.0))
    if not usable:
        return f"{model}: no int8 variant measured"
    score, ratio, key, agreement = max(usable)
    return (
        f"{model}: int8 {key} agreement {agreement:.3f}, {ratio:.2f}x its runtime's fp32 "
        f"(target >= {USABLE_INT8[0]} and >= {USABLE_INT8[1]}x): {_met(score >= USABLE_INT8[1])}"
    )


def offered(variants: str) -> str:
    """The variants less openvino-bf16 where the CPU has no bf16 units."""
    from edgevision.backends.openvino import OpenVinoBackend

    keys = [k for k in variants.split(",") if k != "openvino-bf16" or OpenVinoBackend.supports("bf16")]
    return ",".join(keys)


def load_result(path: Path) -> BenchResult:
    """A finished benchmark read back from its results.json."""
    d = json.loads(path.read_text())
    return BenchResult(
        d["model"],
        d["variants"],
        d["recommended"],
        d["machine"],
        d["settings"],
        d["peak"],
        d["harness_overhead"],
        d["compute"],
        d["failures"],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of " + ", ".join(MODELS))
    parser.add_argument("--threads", default="2")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=1.5, help="seconds each variant runs per round")
    parser.add_argument("--out", type=Path, default=Path("runs/talk"), help="folder for each model's bench report")
    parser.add_argument("--json", type=Path, default=Path("runs/talk/table.json"))
    parser.add_argument("--reuse", default="", help="comma-separated models whose results.json in --out is reused")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    threads = parse_threads(args.threads)
    rows, results = [], {}
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        config = MODELS[model]
        options = BenchOptions(
            random_weights=config["random_weights"],
            variants=offered(config["variants"]),
            threads=threads,
            timing=TimingOptions(rounds=args.rounds, round_seconds=args.seconds),
        )
        if model in args.reuse.split(","):
            results[model] = load_result(args.out / model / "results.json")
        else:
            results[model] = edgevision.bench(model, output=args.out / model, options=options)
        for t in threads:
            rows += rows_for(results[model], t, config["random_weights"])
    first = next(iter(results.values()))
    m = first.machine
    machine = f"{m['cpu']}, {m['usable_cores']} cores ({' '.join(m['flags'])}), {m['os']}, {date.today().isoformat()}"
    peaks = {model: r.peak for model, r in results.items()}
    print(f"Machine: {machine}\n\n{markdown(rows)}\n")
    for line in targets(rows, results):
        print(f"- {line}")
    for model, peak in peaks.items():
        for t, p in peak.items():
            print(
                f"- peak during {model} at {t} threads: fp32 {p['fp32']['gmacs']} GMAC/s, int8 {p['int8']['gmacs']} GMAC/s"
            )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "date": date.today().isoformat(),
                "machine": m,
                "rows": rows,
                "targets": targets(rows, results),
                "peaks": peaks,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
