"""report.html in a real headless browser, and the nanodet-m benchmark end to end."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import fastest_within_budget, headless_chromium, run_cli
from edgevision.types import Detections


def _record(key: str, runtime: str, precision: str, p50: float, agreement: float, *, baseline=False) -> dict:
    rng = np.random.default_rng(len(key))
    samples = list(rng.gamma(20, p50 / 20, 200))
    figures = {
        "latency": {"p50": p50, "p90": p50 * 1.1, "p99": p50 * 1.3, "throughput": 1e3 / p50, "samples": 200},
        "pipeline": {"p50": p50 + 3},
        "load_s": 0.1,
        "first_ms": p50 * 2,
        "peak_rss_mb": 120.0,
        "samples_ms": samples,
        "macs_per_s": 1e9 / p50 * 1e3,
        "fraction_of_peak": 0.5,
    }
    two = {**figures, "latency": {**figures["latency"], "p50": p50 * 0.6}}
    return {
        "variant": key,
        "label": key,
        "runtime": runtime,
        "precision": precision,
        "size_bytes": 4_000_000,
        "macs": 10**9,
        "peak_rss_mb": 120.0,
        "threads": {"1": figures, "2": two},
        "agreement": agreement,
        "agreement_metric": "detection mAP@[.5:.95] vs fp32",
        "baseline": baseline,
        "coco": None,
        "error": None,
        "random_weights": False,
        "notes": [],
    }


@pytest.fixture(scope="module")
def synthetic_report(tmp_path_factory):
    """A report written from synthetic records: three variants, boxes and a heatmap tile."""
    from edgevision.benchmark.report import write_reports
    from edgevision.benchmark.result import BenchResult

    records = [
        _record("ort-fp32", "onnxruntime", "fp32", 20, 1.0, baseline=True),
        _record("ort-int8", "onnxruntime", "int8", 9, 0.985),
        _record("openvino-int8", "openvino", "int8", 7, 0.95),
    ]
    image = np.full((240, 320, 3), 90, np.uint8)
    dets = Detections([[40, 40, 160, 200]], [0.9], [0], ("person",))
    heat = np.zeros_like(image)
    heat[..., 2] = 200
    showcase = {
        r["variant"]: {"prediction": dets, "heatmap": heat if r["variant"] == "ort-fp32" else None} for r in records
    }
    result = BenchResult(
        "toy",
        records,
        "ort-int8",
        {"cpu": "test", "usable_cores": 2, "flags": [], "os": "linux"},
        {"threads": [1, 2], "max_drop": 0.02},
        showcase=showcase,
        showcase_image=image,
    )
    return write_reports(result, tmp_path_factory.mktemp("report"))


def test_report_html_renders_every_image_in_a_real_browser(synthetic_report, tmp_path):
    driver = headless_chromium(tmp_path / "profile")
    try:
        driver.get(synthetic_report["html"].resolve().as_uri())
        sizes = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight, i.alt]);"
        )
        text = driver.find_element("tag name", "body").text
    finally:
        driver.quit()
    plots, tiles = 4, 3 + 1  # four plots; three variants side by side plus one heatmap
    assert len(sizes) == plots + tiles, sizes
    for complete, width, height, alt in sizes:
        assert complete and width > 0 and height > 0, alt
    assert "recommended: ort-int8" in text
    assert "heatmaps" in text


def test_recommended_variant_is_named_in_markdown(synthetic_report):
    md = synthetic_report["md"].read_text()
    assert "recommended: ort-int8" in md and "| ort-int8 ★ |" in md


@pytest.mark.slow
def test_bench_nanodet_end_to_end(samples_cache, tmp_path):
    """The issue's command, short: 1 and 2 threads, sample photos, three variants."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("person.jpg", "dog.jpg", "horses.jpg"):
        shutil.copy(samples_cache[name], photos / name)
    out = tmp_path / "out"
    done = run_cli(
        "bench",
        "nanodet-m",
        "--threads",
        "1,2",
        "--data",
        photos,
        "--variants",
        "ort-fp32,ort-fp16,openvino-fp32",
        "--rounds",
        "2",
        "--seconds",
        "0.3",
        "--no-peak",  # the peaks have their own test (tests/test_bench.py)
        "-o",
        out,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads((out / "results.json").read_text())
    assert [r["variant"] for r in data["variants"]] == ["ort-fp32", "ort-fp16", "openvino-fp32"]
    assert data["recommended"] == fastest_within_budget(
        data["variants"], max_drop=data["settings"]["max_drop"], threads=2
    )
    for r in data["variants"]:
        assert r["error"] is None and r["agreement_metric"].startswith("detection mAP")
        assert set(r["threads"]) == {"1", "2"}
    fp16 = next(r for r in data["variants"] if r["variant"] == "ort-fp16")
    assert fp16["agreement"] > 0.9 and fp16["size_bytes"] < 0.6 * data["variants"][0]["size_bytes"]
    assert "recommended:" in done.stdout and (out / "report.html").stat().st_size > 10_000
