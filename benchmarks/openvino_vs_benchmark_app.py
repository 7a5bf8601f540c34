"""edgevision bench against OpenVINO's own benchmark_app, on the same IR files and settings.

Each round runs ``edgevision.bench`` for the OpenVINO variants (each in its own worker
process, interleaved), then OpenVINO's ``benchmark_app`` on every file bench timed, with the
same threads, latency hint, synchronous API and the inference precision bench reports the
variant ran in; rounds alternate the two so drift of the machine hits both. It prints the
median of bench's p50 and of benchmark_app's median per variant, and their ratio (the
target: bench within 5% of benchmark_app).

    python benchmarks/openvino_vs_benchmark_app.py                           # nanodet-m
    python benchmarks/openvino_vs_benchmark_app.py --model yolox-nano --random-weights
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import edgevision
from edgevision.benchmark.harness import TimingOptions

VARIANTS = ("openvino-fp32", "openvino-bf16", "openvino-int8")
_MEDIAN = re.compile(r"Median:\s+([0-9.]+)\s*ms")


@dataclass
class Row:
    """Everything measured for one variant, round after round."""

    variant: str
    file: str = ""
    precision: str | None = None
    bench_ms: list[float] = field(default_factory=list)
    app_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict:
        bench = statistics.median(self.bench_ms) if self.bench_ms else None
        app = statistics.median(self.app_ms) if self.app_ms else None
        ratio = bench / app if bench and app else None
        return {
            "variant": self.variant,
            "precision": self.precision,
            "bench_p50_ms": bench,
            "benchmark_app_median_ms": app,
            "ratio": ratio,
            "bench_rounds_ms": self.bench_ms,
            "benchmark_app_rounds_ms": self.app_ms,
            "file": self.file,
        }


def benchmark_app_command() -> list[str] | None:
    """The benchmark_app executable beside this Python, on PATH, or its Python module; None if none."""
    beside = Path(sys.executable).with_name("benchmark_app")
    if beside.exists():
        return [str(beside)]
    if found := shutil.which("benchmark_app"):
        return [found]
    try:
        import openvino.tools.benchmark.main  # noqa: F401
    except ImportError:
        return None
    return [sys.executable, "-m", "openvino.tools.benchmark.main"]


def offered_variants(requested: str) -> list[str]:
    """The requested variants less openvino-bf16 where the CPU has no bf16 units."""
    from edgevision.backends.openvino import OpenVinoBackend

    keys = [k.strip() for k in requested.split(",") if k.strip()]
    return [k for k in keys if k != "openvino-bf16" or OpenVinoBackend.supports("bf16")]


def run_bench(args: argparse.Namespace, keys: list[str], output: Path) -> dict[str, dict]:
    """One edgevision bench of ``keys`` at ``args.threads``: the results.json record of each variant."""
    timing = TimingOptions(rounds=args.bench_rounds, round_seconds=args.seconds / args.bench_rounds)
    result = edgevision.bench(
        args.model,
        variants=",".join(keys),
        threads=(args.threads,),
        random_weights=args.random_weights,
        timing=timing,
        measure_peak=False,
        data_count=2,
        output=output,
    )
    return {r["variant"]: r for r in json.loads(Path(result.paths["json"]).read_text())["variants"]}


def app_config(threads: int, precision: str | None, folder: Path) -> Path:
    """benchmark_app's -load_config file: the settings edgevision's OpenVINO backend compiles with."""
    config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    if precision:
        config["INFERENCE_PRECISION_HINT"] = precision
    path = folder / f"config-{precision or 'default'}.json"
    path.write_text(json.dumps({"CPU": config}))
    return path


def run_app(command: list[str], xml: str, config: Path, seconds: float) -> float:
    """benchmark_app's median latency in ms of ``xml`` (-hint latency -api sync, settings from ``config``)."""
    args = [*command, "-m", xml, "-d", "CPU", "-hint", "latency", "-api", "sync", "-t", str(int(seconds))]
    done = subprocess.run(
        [*args, "-load_config", str(config)], capture_output=True, text=True, env={**os.environ, "CI": "true"}
    )
    found = _MEDIAN.search(done.stdout)
    if done.returncode != 0 or not found:
        raise RuntimeError(f"benchmark_app failed on {xml}: {done.stdout[-400:]} {done.stderr[-400:]}")
    return float(found.group(1))


def one_round(args: argparse.Namespace, keys: list[str], rows: dict[str, Row], command: list[str], tmp: Path) -> None:
    """bench every variant, then benchmark_app on every file bench timed."""
    records = run_bench(args, keys, tmp / "bench")
    for key in keys:
        record, row = records.get(key), rows[key]
        if record is None or record.get("error"):
            print(f"  {key}: bench failed: {record and record.get('error')}", file=sys.stderr)
            continue
        row.file, row.precision = record["file"], record.get("inference_precision")
        row.bench_ms.append(record["threads"][str(args.threads)]["latency"]["p50"])
        config = app_config(args.threads, row.precision, tmp)
        row.app_ms.append(run_app(command, row.file, config, args.seconds))
        print(f"  {key} ({row.precision}): bench {row.bench_ms[-1]:.2f} ms, benchmark_app {row.app_ms[-1]:.2f} ms")


def print_table(summaries: list[dict], threads: int) -> None:
    print(f"\n| variant | runs in | bench p50 ms | benchmark_app median ms | bench / app | ({threads} threads) |")
    print("|---|---|---|---|---|---|")
    for s in summaries:
        cells = [s["bench_p50_ms"], s["benchmark_app_median_ms"]]
        shown = ["-" if v is None else f"{v:.2f}" for v in cells]
        ratio = "-" if s["ratio"] is None else f"{s['ratio']:.3f}"
        within = "" if s["ratio"] is None else ("within 5%" if s["ratio"] <= 1.05 else "slower by >5%")
        print(f"| {s['variant']} | {s['precision']} | {shown[0]} | {shown[1]} | {ratio} | {within} |")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="nanodet-m")
    parser.add_argument("--random-weights", action="store_true", help="PyTorch zoo models without a checkpoint")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="bench + benchmark_app rounds, alternating")
    parser.add_argument("--seconds", type=float, default=8.0, help="timed seconds per variant per round, each tool")
    parser.add_argument("--bench-rounds", type=int, default=4, help="bench's own interleaved rounds per run")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    return parser.parse_args()


def main() -> int:
    os.environ.setdefault("CI", "true")  # OpenVINO's telemetry stays off
    args = parse_args()
    command = benchmark_app_command()
    if command is None:
        print("OpenVINO's benchmark_app is not installed (neither the executable nor openvino.tools.benchmark).")
        return 1
    keys = offered_variants(args.variants)
    rows = {key: Row(key) for key in keys}
    with tempfile.TemporaryDirectory(prefix="ov-vs-app-") as tmp:
        for index in range(args.rounds):
            print(f"round {index + 1}/{args.rounds}")
            one_round(args, keys, rows, command, Path(tmp))
    summaries = [row.summary() for row in rows.values()]
    print_table(summaries, args.threads)
    if args.json:
        args.json.write_text(
            json.dumps({"model": args.model, "threads": args.threads, "variants": summaries}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
