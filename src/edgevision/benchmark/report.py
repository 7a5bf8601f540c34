"""What a benchmark writes: results.json, report.md and a stand-alone report.html.

The recommendation and the Pareto front are small pure functions over result records
(``edgevision.benchmark.score``):

>>> from edgevision.benchmark.score import pareto_front, recommend
>>> recs = [{"variant": "ort-fp32", "baseline": True, "agreement": 1.0, "threads": {"2": {"latency": {"p50": 20.0}}}},
...         {"variant": "ort-int8", "baseline": False, "agreement": 0.99, "threads": {"2": {"latency": {"p50": 8.0}}}}]
>>> recommend(recs, max_drop=0.02, threads=2)
'ort-int8'
>>> pareto_front([(20.0, 1.0), (8.0, 0.99), (9.0, 0.95)])
[1, 0]
"""

from __future__ import annotations

import base64
import html
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgevision.benchmark.result import write_json
from edgevision.benchmark.score import p50
from edgevision.files import write_atomic

if TYPE_CHECKING:
    from edgevision.benchmark.result import BenchResult

logger = logging.getLogger(__name__)

SHOWCASE_WIDTH = 420


# ----------------------------------------------------------------------------- choosing


def _fmt(value, spec: str = ".1f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def variant_cell(record: dict, *, recommended: bool = False) -> str:
    """The variant's key, the precision its float layers run in where the runtime reports one, and ★.

    >>> variant_cell({"variant": "openvino-int8", "inference_precision": "bf16"}, recommended=True)
    'openvino-int8 (bf16) ★'
    """
    runs_in = record.get("inference_precision")
    return record["variant"] + (f" ({runs_in})" if runs_in else "") + (" ★" if recommended else "")


def table_rows(result: BenchResult) -> list[list[str]]:
    """One row of text cells per variant and thread count, in the order of ``TABLE_HEADER``."""
    rows = []
    for r in result.records:
        for threads, f in r["threads"].items():
            lat, pipe = f.get("latency", {}), f.get("pipeline", {})
            rows.append(
                [
                    variant_cell(r, recommended=r["variant"] == result.recommended),
                    threads,
                    f"{r['size_bytes'] / 1e6:.2f}",
                    _fmt(f.get("load_s"), ".2f"),
                    _fmt(f.get("first_ms")),
                    _fmt(lat.get("p50"), ".2f"),
                    _fmt(lat.get("p90"), ".2f"),
                    _fmt(lat.get("p99"), ".2f"),
                    _fmt(lat.get("throughput")),
                    _fmt(pipe.get("p50"), ".2f"),
                    _fmt(f.get("peak_rss_mb"), ".0f"),
                    _fmt(r.get("agreement"), ".3f"),
                    _fmt((r.get("coco") or {}).get("map"), ".3f"),
                    _fmt(f.get("macs_per_s") and f["macs_per_s"] / 1e9),
                    _fmt(f.get("fraction_of_peak") and 100 * f["fraction_of_peak"], ".0f"),
                ]
            )
    return rows


TABLE_HEADER = [
    "variant",
    "threads",
    "size MB",
    "load s",
    "first ms",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "inf/s",
    "pipeline p50 ms",
    "peak MB",
    "agreement",
    "COCO AP",
    "GMAC/s",
    "% of peak",
]


TERMINAL_COLUMNS = (
    "variant",
    "threads",
    "size MB",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "pipeline p50 ms",
    "peak MB",
    "agreement",
    "COCO AP",
    "% of peak",
)


def terminal_rows(result: BenchResult) -> list[list[str]]:
    """``table_rows`` cut to the columns that fit a terminal (``TERMINAL_COLUMNS``)."""
    keep = [TABLE_HEADER.index(c) for c in TERMINAL_COLUMNS]
    return [[row[i] for i in keep] for row in table_rows(result)]


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def summary_lines(result: BenchResult) -> list[str]:
    """Recommendation, compute, peak, overhead and machine, one fact per line."""
    bundle = result.settings.get("bundle")
    lines = bundle_lines(bundle) if bundle else [recommendation_sentence(result)]
    export = None if bundle else export_command(result)
    if export:
        lines.append(f"take it to a board: {export}")
    if result.compute:
        lines.append(f"compute: {result.compute['macs'] / 1e9:.3f} GMACs per inference ({result.compute['method']})")
    for threads, peak in result.peak.items():
        for kind in ("fp32", "int8"):
            if kind in peak:
                lines.append(
                    f"peak {kind} at {threads} thread(s): {peak[kind]['gmacs']:.1f} GMAC/s ({peak[kind]['method']})"
                )
    if result.overhead:
        o = result.overhead
        lines.append(
            f"harness overhead ({o['variant']}): edgevision p50 {o['edgevision_p50_ms']:.3f} ms vs bare session.run "
            f"{o['bare_p50_ms']:.3f} ms = {o['overhead_pct']:+.1f}% ({o['overhead_us']:+.1f} µs)"
        )
    if any(r.get("inference_precision") for r in result.records):
        lines.append(
            "(f32)/(bf16) after a variant: the inference precision its runtime reports for float layers; "
            "OpenVINO fp32 is forced to f32, fp16 and int8 keep the plugin's default"
        )
    m = result.machine
    lines.append(
        f"machine: {m['cpu']}, {m['usable_cores']} usable core(s), flags {' '.join(m['flags']) or '-'}, {m['os']}"
    )
    lines += [f"not measured: {key}: {why}" for key, why in result.failures.items()]
    return lines + [how_made_and_run(r) for r in result.records]


def bundle_lines(comparison: dict) -> list[str]:
    """The summary lines of a bundle bench.

    >>> bundle_lines({"variant": "ort-int8", "source_model": "nanodet-m", "made": "2026-12-07",
    ...     "built_on_cpu": "AMD EPYC", "built_on_cores": 2, "built_p50_ms": {"2": 10.0},
    ...     "here_p50_ms": {"1": 19.0, "2": 12.0}, "here_vs_built": {"2": 1.2}})
    ['bundle: ort-int8 of nanodet-m, made 2026-12-07 on AMD EPYC (2 usable cores); every hash checked', 'p50 at 1 thread(s): 19.00 ms here; the bundle recorded none at 1 thread(s)', 'p50 at 2 thread(s): 12.00 ms here, 10.00 ms on the build machine: 1.20x its time']
    """
    lines = [
        f"bundle: {comparison.get('variant') or 'its variant'} of {comparison.get('source_model') or '?'}, "
        f"made {comparison.get('made') or '?'} on {comparison.get('built_on_cpu') or 'an unrecorded machine'} "
        f"({comparison.get('built_on_cores') or '?'} usable cores); every hash checked"
    ]
    for t, here in comparison["here_p50_ms"].items():
        there = comparison["built_p50_ms"].get(t)
        if here is None:
            lines.append(f"p50 at {t} thread(s): not measured here")
        elif there is None:
            lines.append(f"p50 at {t} thread(s): {here:.2f} ms here; the bundle recorded none at {t} thread(s)")
        else:
            lines.append(
                f"p50 at {t} thread(s): {here:.2f} ms here, {there:.2f} ms on the build machine: "
                f"{here / there:.2f}x its time"
            )
    if comparison.get("agreement_here") is not None:
        lines.append(
            f"agreement with fp32 on its check photos ({comparison.get('agreement_metric')}): "
            f"{comparison['agreement_here']:.3f} here, {comparison.get('agreement_when_built') or 0:.3f} "
            "on the build machine"
        )
    return lines


def how_made_and_run(record: dict) -> str:
    """One line on how a variant was made (its quantizer's notes) and run (the runtime's settings).

    >>> how_made_and_run({"variant": "ort-int8", "notes": ["QDQ int8"], "excluded_layers": 2,
    ...                   "runtime_settings": {"2": {"threads": 2}}})
    'ort-int8: QDQ int8; 2 layers kept float; run with threads 2'
    """
    made = list(record.get("notes") or [])
    if record.get("excluded_layers"):
        made.append(f"{record['excluded_layers']} layers kept float")
    runs = record.get("runtime_settings") or {}
    shown = next(iter(runs.values()), {}) if runs else {}
    ran = ", ".join(f"{key} {value}" for key, value in shown.items() if key != "threads" or len(runs) == 1)
    parts = [*made, f"run with {ran}"] if ran else made
    return f"{record['variant']}: " + ("; ".join(parts) if parts else "as converted")


def recommendation_sentence(result: BenchResult) -> str:
    rec = next((r for r in result.records if r["variant"] == result.recommended), None)
    if rec is None:
        return "recommended: none (nothing was scored)"
    budget = result.settings.get("max_drop")
    threads = max(result.settings.get("threads", [1]))
    what = (
        f"the fp32 baseline: no faster variant within {budget} of its agreement"
        if rec.get("baseline")
        else f"{rec['label']}, the fastest within {budget} of fp32 agreement"
    )
    return (
        f"recommended: {rec['variant']}: {what}, "
        f"p50 {_fmt(p50(rec, threads), '.2f')} ms at {threads} thread(s), agreement {_fmt(rec.get('agreement'), '.3f')}"
    )


def export_command(result: BenchResult, results_json: Path | None = None) -> str | None:
    """The command that bundles the recommended variant, or None when it cannot be bundled.

    >>> from edgevision.benchmark.result import BenchResult
    >>> r = BenchResult("nanodet-m", [{"variant": "openvino-int8", "runtime": "openvino"}], "openvino-int8", {}, {})
    >>> export_command(r, Path("runs/bench/nanodet-m/results.json"))
    'edgevision export --from-bench runs/bench/nanodet-m/results.json -o nanodet-m-openvino-int8.tar.gz'
    """
    rec = next((r for r in result.records if r["variant"] == result.recommended), None)
    if rec is None or rec.get("runtime") == "torch":
        return None
    results_json = results_json or result.paths.get("json") or Path("results.json")
    name = Path(result.model).stem if "/" in result.model or "." in result.model else result.model
    return f"edgevision export --from-bench {results_json} -o {name}-{rec['variant']}.tar.gz"


def render_markdown(result: BenchResult) -> str:
    """report.md: summary, the table, and notes per variant."""
    parts = [f"# edgevision bench: {result.model}", ""]
    if any(r.get("random_weights") for r in result.records):
        parts += [
            "**Random weights**: sizes and speeds are real, predictions are not; agreement is raw-output cosine.",
            "",
        ]
    parts += [f"- {line}" for line in summary_lines(result)] + [
        "",
        _markdown_table(TABLE_HEADER, table_rows(result)),
        "",
    ]
    metric = next((r["agreement_metric"] for r in result.records if r.get("agreement_metric")), None)
    if metric:
        parts.append(f"agreement: {metric}; ★ recommended.")
    return "\n".join(parts) + "\n"


# ----------------------------------------------------------------------------- html


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def image_png(image: np.ndarray, width: int = SHOWCASE_WIDTH) -> bytes:
    """A BGR image scaled to ``width`` pixels wide, as PNG bytes."""
    import cv2

    scale = width / image.shape[1]
    small = cv2.resize(image, (width, max(1, round(image.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".png", small)
    return buf.tobytes()


def showcase_tiles(result: BenchResult) -> list[tuple[str, bytes]]:
    """(caption, PNG) of the real image decoded by every variant, and heatmaps where the model has them."""
    from edgevision.annotate import draw, draw_banner

    if result.showcase_image is None:
        return []
    tiles = []
    random = any(r.get("random_weights") for r in result.records)
    for key, shown in result.showcase.items():
        image = (
            draw(result.showcase_image, shown["prediction"])
            if shown.get("prediction") is not None
            else result.showcase_image
        )
        image = draw_banner(image, "RANDOM WEIGHTS") if random else image
        tiles.append((f"{key}: {_count(shown.get('prediction'))}", image_png(image)))
        if shown.get("heatmap") is not None:
            tiles.append((f"{key}: heatmaps (max over keypoints, scaled to its peak)", image_png(shown["heatmap"])))
    return tiles


def _count(prediction) -> str:
    if prediction is None:
        return "raw outputs"
    return f"{len(prediction)} {'people' if prediction.task == 'pose' else 'objects'}"


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#f0f0f0}td:first-child{text-align:left}
.grid{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0}figcaption{font-size:13px;text-align:center}
.rec{background:#e8f6e8;padding:.6em;border-left:4px solid #3a3}"""


def render_html(result: BenchResult, plots: list[tuple[str, bytes]]) -> str:
    """report.html: everything inline (plots and images as base64 PNG), no external resources."""
    esc = html.escape
    rows = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in table_rows(result))
    head = "".join(f"<th>{esc(h)}</th>" for h in TABLE_HEADER)
    facts = "".join(f"<li>{esc(line)}</li>" for line in summary_lines(result)[1:])
    figures = "".join(
        f'<figure><img alt="{esc(c)}" src="{png_data_uri(p)}"><figcaption>{esc(c)}</figcaption></figure>'
        for c, p in plots
    )
    tiles = "".join(
        f'<figure><img class="tile" alt="{esc(c)}" src="{png_data_uri(p)}"><figcaption>{esc(c)}</figcaption></figure>'
        for c, p in showcase_tiles(result)
    )
    random = any(r.get("random_weights") for r in result.records)
    warning = "<p><b>Random weights:</b> sizes and speeds are real, predictions are not.</p>" if random else ""
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>edgevision bench: {esc(result.model)}</title>"
        f"<style>{_CSS}</style></head><body><h1>edgevision bench: {esc(result.model)}</h1>{warning}"
        f"<p class='rec'>{esc(recommendation_sentence(result))}</p><ul>{facts}</ul>"
        f"<table><tr>{head}</tr>{rows}</table><h2>Plots</h2><div class='grid'>{figures}</div>"
        f"<h2>The same image, decoded by every variant</h2><div class='grid'>{tiles}</div></body></html>"
    )


def write_reports(result: BenchResult, folder: Path) -> dict[str, Path]:
    """results.json, report.md and report.html in ``folder``."""
    from edgevision.benchmark.plots import (
        all_plots,  # matplotlib, only when a report is written
    )

    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": write_json(folder / "results.json", result.to_json())}
    result.paths = {**result.paths, "json": paths["json"]}  # report.md names it in the export command
    paths["md"] = folder / "report.md"
    write_atomic(paths["md"], render_markdown(result).encode())
    paths["html"] = folder / "report.html"
    write_atomic(paths["html"], render_html(result, all_plots(result)).encode())
    logger.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return paths
