"""Benchmark plots as PNG bytes, drawn with matplotlib's object API on the Agg canvas.

No global pyplot state is touched: each plot is a ``Figure`` rendered by ``FigureCanvasAgg``.

>>> png = latency_vs_accuracy(records, threads=2)  # doctest: +SKIP
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from edgevision.benchmark.score import p50, pareto_front

if TYPE_CHECKING:
    from edgevision.benchmark.result import BenchResult

logger = logging.getLogger(__name__)

_RUNTIME_COLOURS = {
    "torch": "#d62728",
    "onnxruntime": "#1f77b4",
    "openvino": "#9467bd",
    "litert": "#2ca02c",
    "ncnn": "#ff7f0e",
}


def _figure(width: float = 6.4, height: float = 4.2):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig, fig.add_subplot()


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buf = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buf)
    return buf.getvalue()


def _colour(record: dict) -> str:
    return _RUNTIME_COLOURS.get(record.get("runtime", ""), "#7f7f7f")


def latency_vs_accuracy(records: Sequence[dict], *, threads: int) -> bytes:
    """Scatter of p50 latency against agreement, with the Pareto front as a step line."""
    fig, ax = _figure()
    points = [
        (p50(r, threads), r["agreement"], r) for r in records if p50(r, threads) and r.get("agreement") is not None
    ]
    for x, y, r in points:
        ax.scatter(x, y, s=60, color=_colour(r), marker="s" if r.get("precision") == "int8" else "o", zorder=3)
        ax.annotate(r["variant"], (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    front = [points[i] for i in pareto_front([(x, y) for x, y, _ in points])]
    if front:
        ax.step(
            [x for x, _, _ in front],
            [y for _, y, _ in front],
            where="post",
            color="#444",
            ls="--",
            lw=1,
            label="Pareto front",
        )
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xlabel(f"p50 latency at {threads} thread(s), ms (lower is better)")
    ax.set_ylabel("agreement with fp32 (higher is better)")
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.set_title("Latency vs accuracy")
    ax.grid(alpha=0.3)
    return _png(fig)


def latency_distributions(records: Sequence[dict], *, threads: int) -> bytes:
    """Box plots of every variant's per-inference latency at ``threads`` (warm-up excluded)."""
    fig, ax = _figure(max(6.4, 0.8 * len(records) + 2))
    shown = [r for r in records if r.get("threads", {}).get(str(threads), {}).get("samples_ms")]
    data = [r["threads"][str(threads)]["samples_ms"] for r in shown]
    if data:
        boxes = ax.boxplot(
            data,
            tick_labels=[r["variant"] for r in shown],
            showfliers=True,
            patch_artist=True,
            flierprops={"markersize": 2},
        )
        for patch, r in zip(boxes["boxes"], shown):
            patch.set_facecolor(_colour(r))
            patch.set_alpha(0.5)
        ax.set_yscale("log")
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.set_ylabel("latency per inference, ms (log)")
    ax.set_title(f"Latency distribution at {threads} thread(s)")
    ax.grid(alpha=0.3, axis="y")
    return _png(fig)


def size_bars(records: Sequence[dict]) -> bytes:
    """Model file size of every variant, in MB."""
    fig, ax = _figure()
    names = [r["variant"] for r in records]
    sizes = [r["size_bytes"] / 1e6 for r in records]
    bars = ax.bar(names, sizes, color=[_colour(r) for r in records])
    ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.set_ylabel("file size, MB")
    ax.set_title("Model size")
    return _png(fig)


def thread_scaling(records: Sequence[dict]) -> bytes:
    """p50 latency against thread count, one line per variant."""
    fig, ax = _figure()
    for r in records:
        pairs = sorted((int(t), f["latency"]["p50"]) for t, f in r.get("threads", {}).items() if f.get("latency"))
        if pairs:
            ax.plot(
                [t for t, _ in pairs],
                [v for _, v in pairs],
                marker="o",
                color=_colour(r),
                ls="--" if r.get("precision") == "int8" else "-",
                label=r["variant"],
            )
    ax.set_xlabel("threads")
    ax.set_ylabel("p50 latency, ms (log)")
    ax.set_yscale("log")
    ax.set_title("Thread scaling")
    ax.legend(fontsize=7, ncols=2)
    ax.grid(alpha=0.3)
    return _png(fig)


def all_plots(result: BenchResult) -> list[tuple[str, bytes]]:
    """(caption, PNG) of every report plot."""
    threads = max(result.settings.get("threads", [1]))
    records = [r for r in result.records if not r.get("error")]
    return [
        ("latency vs accuracy, Pareto front dashed", latency_vs_accuracy(records, threads=threads)),
        ("latency distributions", latency_distributions(records, threads=threads)),
        ("file sizes", size_bars(result.records)),
        ("thread scaling", thread_scaling(records)),
    ]
