"""Every precision on every quantization backend for every zoo model, in one table.

For each model and each backend (ort, openvino, litert) this makes the fp16 and int8
variants with ``quantize_model`` (int8 through the accuracy budget, ``--max-drop``), and
prints size ratio, parity (worst output cosine) and task agreement with fp32, plus p50
latency of fp32 on the variant's own runtime -> the variant (the fp32 file converted for
that runtime: an OpenVINO IR run in f32, a TFLite file; 2 threads, both loaded in one
process and timed in alternating rounds, so only the ratio is meaningful). A variant is
usable when it agrees within ``--max-drop`` and runs at least ``USABLE_SPEEDUP`` times as fast
as its runtime's fp32; the last lines name each model's best usable int8 variant. PyTorch zoo models run with random weights: raw-output
agreement only. The big ones (``HEAVY``) are made only as OpenVINO int8 unless named in
``--models``, which keeps the default run near half an hour on two cores.

    python benchmarks/quantize_matrix.py --json runs/quantize/matrix.json
    python benchmarks/quantize_matrix.py --models nanodet-m --backends ort --precisions int8
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

import edgevision
from edgevision.errors import EdgevisionError
from edgevision.files import write_atomic
from edgevision.quantization import QuantizeOptions
from edgevision.quantization.budget import compare_latency
from edgevision.samples import sample_path
from edgevision.zoo import get_spec, list_models
from edgevision.zoo.pytorch import is_pytorch_family

# Slow to quantize and time: OpenVINO int8 only, unless asked for by name.
HEAVY = ("yolox-m", "yolox-l", "yolox-x", "openpose-body")
BACKENDS = ("ort", "openvino", "litert")
PRECISIONS = {"fp16": "fp16", "int8": "auto"}
SUFFIXES = {"ort": ".onnx", "openvino": ".xml", "litert": ".tflite"}
CONVERT_TO = {"openvino": "openvino", "litert": "tflite"}
RUNTIMES = {"ort": "onnxruntime", "openvino": "openvino", "litert": "litert"}
USABLE_SPEEDUP = 1.5  # int8 against the same runtime's fp32


def _worst_cosine(parity: dict) -> float | None:
    values = [v.get("cosine") for v in parity.values() if isinstance(v, dict) and v.get("cosine") is not None]
    return min(values) if values else None


def _row(model: str, backend: str, label: str, result) -> dict:
    lat = result.latency_ms or {}
    return {
        "model": model,
        "backend": backend,
        "precision": label,
        "size_mb": result.output_bytes / 1e6,
        "size_ratio": result.size_ratio,
        "worst_cosine": _worst_cosine(result.parity),
        "metric": result.metric,
        "agreement": result.agreement,
        "budget_met": result.budget_met,
        "excluded": len(result.excluded),
        "p50_fp32_ms": lat.get("fp32"),
        "p50_variant_ms": next((v for k, v in lat.items() if k != "fp32"), None),
        "fp32_runtime": result.latency_fp32_runtime,
        "seconds": result.seconds,
    }


def fp32_file(model: str, source: Path, backend: str, out: Path) -> Path:
    """The fp32 file ``backend`` runs: the source ONNX itself, or its conversion (made once per model:
    PyTorch models are exported to files of the same name in different folders)."""
    if backend not in CONVERT_TO:
        return source
    target = out / f"{model}-{source.stem}-fp32" / f"model{SUFFIXES[backend]}"
    if not target.exists():
        edgevision.convert(str(source), to=CONVERT_TO[backend], output=target)
    return target


def input_feed(path: Path, runtime: str, side: int = 1) -> dict:
    """A seeded image-like input for ``path``; timing needs no real image. A dynamic batch is 1,
    other dynamic dimensions are ``side`` (MoveNet MultiPose takes the frame's size: timed at
    its largest, the zoo's input size, not at 1x1)."""
    from edgevision.backends import create_backend

    spec = create_backend(runtime, path, threads=1).inputs[0]
    shape = [d if d else (1 if i == 0 else side) for i, d in enumerate(spec.shape)]
    values = np.random.default_rng(0).uniform(0, 1, shape)
    if np.dtype(spec.dtype).kind in "iu":
        values = values * 255
    return {spec.name: values.astype(spec.dtype)}


def time_against_fp32(row: dict, result, backend: str, out: Path, threads: int = 2) -> None:
    """Put p50 of fp32 on the variant's own runtime and of the variant, timed together, in ``row``;
    a failure is recorded in the row (the quantize-time latencies stay) instead of ending the run."""
    runtime = RUNTIMES[backend]
    try:
        fp32 = fp32_file(row["model"], Path(result.source), backend, out)
        feeds = input_feed(Path(result.output), runtime, side=max(get_spec(row["model"]).input_size or (1,)))
        times = compare_latency(
            {"fp32": (fp32, runtime), "variant": (Path(result.output), runtime)},
            feeds,
            threads=threads,
            rounds=9,
            runs=20,
        )
    except EdgevisionError as exc:
        row["timing_error"] = f"fp32 against the variant on {runtime}: {exc}"
        return
    row.update(p50_fp32_ms=times["fp32"], p50_variant_ms=times["variant"], fp32_runtime=runtime)


def random_weights(model: str) -> bool:
    """PyTorch zoo models have no weights in any package: they run with seeded random ones."""
    return is_pytorch_family(get_spec(model))


def jobs(models: list[str], backends: list[str], labels: list[str], *, named: bool) -> list[tuple[str, str, str]]:
    """(model, backend, precision) to run; ``HEAVY`` models only as OpenVINO int8 unless ``named``."""
    out = []
    for model in models:
        for backend in backends:
            for label in labels:
                if model in HEAVY and not named and (backend, label) != ("openvino", "int8"):
                    continue
                out.append((model, backend, label))
    return out


def run_one(model: str, backend: str, label: str, out: Path, max_drop: float) -> dict:
    """One variant, timed against its runtime's fp32; failures are recorded, not fatal."""
    try:
        options = QuantizeOptions(
            precision=PRECISIONS[label], max_drop=max_drop, calib=str(sample_path("vtest.avi")), calib_count=48
        )
        result = edgevision.quantize(
            model,
            backend=backend,
            output=out / f"{model}-{backend}-{label}" / f"model{SUFFIXES[backend]}",
            options=options,
            random_weights=random_weights(model),
        )
    except EdgevisionError as exc:
        return {"model": model, "backend": backend, "precision": label, "error": str(exc)}
    row = _row(model, backend, label, result)
    time_against_fp32(row, result, backend, out)
    return row


def speedup(row: dict) -> float | None:
    fp32, variant = row.get("p50_fp32_ms"), row.get("p50_variant_ms")
    return fp32 / variant if fp32 and variant else None


def usable(row: dict, max_drop: float) -> bool:
    """Within the budget and at least ``USABLE_SPEEDUP`` times its runtime's fp32."""
    agreement, ratio = row.get("agreement"), speedup(row)
    return agreement is not None and agreement >= 1 - max_drop - 1e-9 and ratio is not None and ratio >= USABLE_SPEEDUP


def verdicts(rows: list[dict], max_drop: float) -> list[str]:
    """One line per model: its best usable int8 variant (fastest against fp32), or why there is none."""
    lines = []
    for model in dict.fromkeys(r["model"] for r in rows):
        int8 = [r for r in rows if r["model"] == model and r["precision"] == "int8" and "error" not in r]
        good = [r for r in int8 if usable(r, max_drop)]
        if good:
            best = max(good, key=speedup)
            lines.append(
                f"{model}: usable int8 on {best['backend']}: agreement {best['agreement']:.3f}, "
                f"{speedup(best):.2f}x its runtime's fp32"
            )
        else:
            tried = ", ".join(
                f"{r['backend']} {_fmt(r['agreement'], '.3f')} at {_fmt(speedup(r), '.2f')}x" for r in int8
            )
            lines.append(f"{model}: NO usable int8 ({tried or 'none built'})")
    return lines


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[dict], max_drop: float, file=None) -> None:
    print(
        "| model | backend | precision | MB | × fp32 size | worst cosine | agreement | budget | "
        "p50 fp32 → variant ms (fp32 on) | speed-up | usable |",
        file=file,
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |", file=file)
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | {r['backend']} | {r['precision']} | failed: {r['error'][:90]} |||||||", file=file)
            continue
        budget = {True: "met", False: "missed", None: "-"}[r["budget_met"]]
        print(
            f"| {r['model']} | {r['backend']} | {r['precision']} | {r['size_mb']:.2f} | {r['size_ratio']:.2f} | "
            f"{_fmt(r['worst_cosine'], '.4f')} | {_fmt(r['agreement'], '.3f')} {r['metric']} | {budget} | "
            f"{_fmt(r['p50_fp32_ms'], '.1f')} → {_fmt(r['p50_variant_ms'], '.1f')} ({r.get('fp32_runtime') or '-'}) | "
            f"{_fmt(speedup(r), '.2f')}× | {'yes' if usable(r, max_drop) else 'no'} |",
            file=file,
        )
    print(file=file)
    for line in verdicts(rows, max_drop):
        print(f"- {line}", file=file)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="Comma-separated zoo models (default: all of them).")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--max-drop", type=float, default=0.02)
    parser.add_argument("--out", type=Path, default=Path("runs/quantize/matrix"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path, help="Also write the table here.")
    args = parser.parse_args()
    logging.getLogger("nncf").setLevel(logging.WARNING)
    models = args.models.split(",") if args.models else list_models()
    for flag, given, known in (
        ("--models", models, list_models()),
        ("--backends", args.backends.split(","), BACKENDS),
        ("--precisions", args.precisions.split(","), PRECISIONS),
    ):
        if unknown := [name for name in given if name not in known]:
            parser.error(f"{flag}: unknown {', '.join(unknown)}; known: {', '.join(known)}")
    rows = []
    for model, backend, label in jobs(
        models, args.backends.split(","), args.precisions.split(","), named=bool(args.models)
    ):
        start = time.perf_counter()
        rows.append(run_one(model, backend, label, args.out, args.max_drop))
        print(f"{model} {backend} {label}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        save(rows, args)  # after every job: an hour of rows survives a crash or Ctrl-C
    print_table(rows, args.max_drop)
    return 0


def save(rows: list[dict], args: argparse.Namespace) -> None:
    """Write the rows so far to ``--json`` and ``--markdown``, each replaced whole."""
    if args.json:
        write_atomic(args.json, json.dumps(rows, indent=2).encode())
    if args.markdown:
        table = io.StringIO()
        print_table(rows, args.max_drop, file=table)
        write_atomic(args.markdown, table.getvalue().encode())


if __name__ == "__main__":
    sys.exit(main())
