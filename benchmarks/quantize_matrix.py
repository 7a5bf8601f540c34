"""Every precision on every quantization backend for every zoo model, in one table.

For each model and each backend (ort, openvino, litert) this makes the fp16 and int8
variants with ``quantize_model`` (int8 through the accuracy budget, ``--max-drop``), and
prints size ratio, parity (worst output cosine) and task agreement with fp32, plus p50
latency fp32 -> variant as measured by the quantizer (2 threads, same process, so only
the ratio is meaningful). PyTorch zoo models run with random weights: raw-output
agreement only. The big ones (``HEAVY``) are made only as OpenVINO int8 unless named in
``--models``, which keeps the default run near half an hour on two cores.

    python benchmarks/quantize_matrix.py --json runs/quantize/matrix.json
    python benchmarks/quantize_matrix.py --models nanodet-m --backends ort --precisions int8
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import edgevision
from edgevision.errors import EdgevisionError
from edgevision.quantization import QuantizeOptions
from edgevision.samples import sample_path
from edgevision.zoo import get_spec, list_models
from edgevision.zoo.pytorch import is_pytorch_family

# Slow to quantize and time: OpenVINO int8 only, unless asked for by name.
HEAVY = ("yolox-m", "yolox-l", "yolox-x", "openpose-body")
BACKENDS = ("ort", "openvino", "litert")
PRECISIONS = {"fp16": "fp16", "int8": "auto"}
SUFFIXES = {"ort": ".onnx", "openvino": ".xml", "litert": ".tflite"}


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
        "seconds": result.seconds,
    }


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
    """One variant; failures are recorded, not fatal."""
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
    return _row(model, backend, label, result)


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[dict], file=None) -> None:
    print(
        "| model | backend | precision | MB | × fp32 size | worst cosine | agreement | budget | p50 fp32 → variant ms |",
        file=file,
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |", file=file)
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | {r['backend']} | {r['precision']} | failed: {r['error'][:90]} |||||", file=file)
            continue
        budget = {True: "met", False: "missed", None: "-"}[r["budget_met"]]
        print(
            f"| {r['model']} | {r['backend']} | {r['precision']} | {r['size_mb']:.2f} | {r['size_ratio']:.2f} | "
            f"{_fmt(r['worst_cosine'], '.4f')} | {_fmt(r['agreement'], '.3f')} {r['metric']} | {budget} | "
            f"{_fmt(r['p50_fp32_ms'], '.1f')} → {_fmt(r['p50_variant_ms'], '.1f')} |",
            file=file,
        )


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
    rows = []
    for model, backend, label in jobs(
        models, args.backends.split(","), args.precisions.split(","), named=bool(args.models)
    ):
        start = time.perf_counter()
        rows.append(run_one(model, backend, label, args.out, args.max_drop))
        print(f"{model} {backend} {label}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    print_table(rows)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        with open(args.markdown, "w") as f:
            print_table(rows, file=f)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
