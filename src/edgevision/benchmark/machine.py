"""The machine a benchmark ran on: CPU and flags, tool versions, MACs per inference, GEMM peaks."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from pathlib import Path

from edgevision.benchmark.peak import best_of, measure_peak
from edgevision.benchmark.variants import BenchSource
from edgevision.inspect.graph import load_onnx, onnx_macs
from edgevision.variants import tool_versions
from edgevision.zoo.pytorch import build_module
from edgevision.zoo.registry import get_spec

Progress = Callable[[str], None]


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
    notable = (
        "avx2",
        "fma",
        "avx512f",
        "avx512_vnni",
        "avx512_bf16",
        "amx_int8",
        "amx_bf16",
        "avx_vnni",
        "asimddp",
        "neon",
    )
    return {
        "cpu": model or platform.machine(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "flags": [f for f in notable if f in flags],
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def versions() -> dict:
    return tool_versions()


def count_model_macs(source: BenchSource) -> dict:
    """MACs per inference: PyTorch's FlopCounterMode for PyTorch models, else the ONNX graph counter."""
    if source.pytorch:
        from edgevision.models.flops import count_macs  # needs torch

        spec = get_spec(source.label)
        module = build_module(spec, weights=source.weights, random_weights=source.weights is None)
        return {"macs": int(count_macs(module, spec.flops_input)), "method": "torch.utils.flop_counter (FLOPs / 2)"}
    return {
        "macs": int(sum(onnx_macs(load_onnx(source.onnx)).values())),
        "method": "Conv/ConvTranspose/Gemm/MatMul MACs from the ONNX graph with shape inference",
    }


def measure_peaks(threads: tuple[int, ...], say: Progress, before: dict | None = None) -> dict:
    """GEMM peaks per thread count; with ``before`` (an earlier measurement) the best of both."""
    peaks = {}
    for t in threads:
        say(f"measuring the GEMM peak at {t} thread(s)")
        peaks[str(t)] = best_of(measure_peak(threads=t), *([before[str(t)]] if before else []))
    return peaks
