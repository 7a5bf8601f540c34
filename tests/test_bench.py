"""edgevision bench: the harness on a tiny model, the recommendation, the Pareto front, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

import tiny_models
from conftest import QUICK_TIMING, assert_clean_error, fastest_within_budget, run_cli
from edgevision.benchmark.harness import summarize
from edgevision.benchmark.score import pareto_front, recommend

QUICK = QUICK_TIMING


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-bench")
    return tiny_models.build_torch(folder)["onnx"]


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(folder / f"img{i}.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    return folder


# ----------------------------------------------------------------------------- the harness


# ~25 s, most of it measuring the GEMM peaks: the tests using it are marked slow.
@pytest.fixture(scope="module")
def tiny_bench(tiny_onnx, image_folder, tmp_path_factory):
    import edgevision

    out = tmp_path_factory.mktemp("bench-out")
    return edgevision.bench(
        str(tiny_onnx),
        variants="ort-fp32,openvino-fp32",
        threads="1,2",
        data=str(image_folder),
        output=out,
        timing=QUICK,
    )


RECORD_FIELDS = {
    "variant",
    "runtime",
    "precision",
    "size_bytes",
    "macs",
    "peak_rss_mb",
    "threads",
    "agreement",
    "agreement_metric",
    "baseline",
    "coco",
    "error",
}
THREAD_FIELDS = {"load_s", "first_ms", "latency", "pipeline", "peak_rss_mb", "macs_per_s", "fraction_of_peak"}


@pytest.mark.slow
def test_harness_writes_a_full_record_per_variant(tiny_bench):
    data = json.loads(tiny_bench.paths["json"].read_text())
    assert [r["variant"] for r in data["variants"]] == ["ort-fp32", "openvino-fp32"]
    assert {"cpu", "usable_cores", "flags"} <= set(data["machine"])
    assert "onnxruntime" in data["versions"] and data["settings"]["threads"] == [1, 2]
    for record in data["variants"]:
        assert set(record) >= RECORD_FIELDS, RECORD_FIELDS - set(record)
        assert record["error"] is None
        assert record["size_bytes"] > 0 and record["macs"] == 16 * 16 * 8 * 27 + 8 * 4
        assert record["peak_rss_mb"] > 0
        assert set(record["threads"]) == {"1", "2"}
        for figures in record["threads"].values():
            assert set(figures) >= THREAD_FIELDS
            lat = figures["latency"]
            assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
            assert lat["samples"] >= QUICK.rounds * QUICK.min_iterations
            assert figures["pipeline"]["p50"] > 0 and figures["load_s"] > 0 and figures["first_ms"] > 0


@pytest.mark.slow
def test_each_variant_says_how_its_runtime_was_set_up(tiny_bench):
    by_key = {r["variant"]: r for r in tiny_bench.records}
    ov = by_key["openvino-fp32"]["runtime_settings"]
    assert {t: s["INFERENCE_NUM_THREADS"] for t, s in ov.items()} == {"1": 1, "2": 2}
    assert all(s["INFERENCE_PRECISION_HINT"] == "f32" and s["PERFORMANCE_HINT"] == "LATENCY" for s in ov.values())
    assert by_key["ort-fp32"]["runtime_settings"]["2"]["threads"] == 2
    report = tiny_bench.paths["md"].read_text()
    assert "openvino-fp32: " in report and "NUM_STREAMS" in report


@pytest.mark.slow
def test_fp32_variants_agree_and_baseline_is_recommended_or_faster(tiny_bench):
    by_key = {r["variant"]: r for r in tiny_bench.records}
    assert by_key["ort-fp32"]["baseline"] and by_key["ort-fp32"]["agreement"] == pytest.approx(1.0)
    # Same network, another runtime: outputs within the 1e-4 parity tolerance give cosine >= 1 - (1e-4)^2 / 2.
    assert by_key["openvino-fp32"]["agreement"] >= 1 - 1e-8
    assert tiny_bench.recommended == fastest_within_budget(tiny_bench.records, max_drop=0.02, threads=2)


@pytest.mark.slow
def test_harness_overhead_against_bare_session_run_is_small(tiny_bench):
    overhead = tiny_bench.overhead
    assert overhead["bare_p50_ms"] > 0 and overhead["edgevision_p50_ms"] > 0
    # Checking the feeds and naming the outputs costs tens of microseconds (6-20 measured here, on a
    # model that runs in 20): 100 leaves room for a busy machine and still catches a slower harness.
    assert overhead["overhead_us"] < 100


@pytest.mark.slow
def test_peak_is_measured_for_both_precisions(tiny_bench):
    for threads in ("1", "2"):
        peak = tiny_bench.peak[threads]
        assert peak["fp32"]["gmacs"] > 0 and peak["int8"]["gmacs"] > 0
        assert "matmul" in peak["fp32"]["method"] or "mm" in peak["fp32"]["method"]


def test_a_peak_probe_that_hangs_is_skipped_with_a_warning(monkeypatch, caplog):
    """A probe past its time (a reference int8 kernel on a CPU without VNNI took minutes) leaves
    the peak out; bench goes on."""
    import subprocess

    from edgevision.benchmark import peak

    def hang(command, **kwargs):
        raise subprocess.TimeoutExpired(command, kwargs["timeout"])

    monkeypatch.setattr(peak.subprocess, "run", hang)
    with caplog.at_level("WARNING"):
        assert peak.measure_peak(threads=1) == {}
    assert "took over 300 s" in caplog.text


@pytest.mark.slow
def test_reports_are_written(tiny_bench):
    md = tiny_bench.paths["md"].read_text()
    assert "| ort-fp32" in md and "recommended:" in md and "harness overhead" in md
    html = tiny_bench.paths["html"].read_text()
    assert html.count("data:image/png;base64,") >= 4
    assert "http://" not in html and "https://" not in html  # stands alone


def test_ncnn_variants_are_built_timed_and_agree(tiny_onnx, image_folder, tmp_path):
    """ncnn-fp32 is converted by pnnx and runs in true fp32; ncnn-fp16 runs the same file in fp16."""
    import edgevision

    result = edgevision.bench(
        str(tiny_onnx),
        variants="ort-fp32,ncnn-fp32,ncnn-fp16",
        threads="1",
        data=str(image_folder),
        output=tmp_path,
        timing=QUICK,
        measure_peak=False,
    )
    by_key = {r["variant"]: r for r in result.records}
    assert set(by_key) == {"ort-fp32", "ncnn-fp32", "ncnn-fp16"} and not result.failures
    for key in ("ncnn-fp32", "ncnn-fp16"):
        record = by_key[key]
        assert record["error"] is None and record["runtime"] == "ncnn"
        assert record["threads"]["1"]["latency"]["p50"] > 0
        assert record["runtime_settings"]["1"]["num_threads"] == 1
        # Idle OpenMP threads sleep: spinning ones made 2 threads slower than 1 on a shared machine.
        assert record["runtime_settings"]["1"]["OMP_WAIT_POLICY"] == os.environ.get("OMP_WAIT_POLICY", "PASSIVE")
    # .param and .bin both counted: the weights alone are 4 * (8*27 + 8 + 4*8 + 4) bytes.
    assert by_key["ncnn-fp32"]["size_bytes"] > 4 * (8 * 27 + 8 + 4 * 8 + 4)
    assert by_key["ncnn-fp32"]["size_bytes"] == by_key["ncnn-fp16"]["size_bytes"]
    assert by_key["ncnn-fp32"]["runtime_settings"]["1"]["use_fp16_storage"] is False
    assert by_key["ncnn-fp16"]["runtime_settings"]["1"]["use_fp16_storage"] is True
    assert by_key["ncnn-fp32"]["agreement"] >= 1 - 1e-8
    # fp16 storage rounds weights and activations to 11 significant bits: close, not equal.
    assert by_key["ncnn-fp16"]["agreement"] >= 0.999


def test_summarize_percentiles():
    figures = summarize(list(range(1, 101)))
    assert figures["p50"] == pytest.approx(50.5) and figures["p99"] == pytest.approx(99.01)
    assert summarize([]) == {}


# ----------------------------------------------------------------------------- choosing


def record(key: str, p50: float, agreement: float | None, *, baseline: bool = False, error: str | None = None) -> dict:
    return {
        "variant": key,
        "baseline": baseline,
        "agreement": agreement,
        "error": error,
        "threads": {"2": {"latency": {"p50": p50}}},
    }


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        (
            [record("ort-fp32", 20, 1.0, baseline=True), record("ort-int8", 8, 0.99), record("ov-int8", 6, 0.90)],
            "ort-int8",
        ),
        (
            [record("ort-fp32", 20, 1.0, baseline=True), record("ort-int8", 8, 0.95), record("ov-int8", 6, 0.90)],
            "ort-fp32",
        ),
        (
            [record("torch-fp32", 50, 1.0, baseline=True), record("ort-fp32", 20, 1.0), record("ov-fp16", 15, 0.985)],
            "ov-fp16",
        ),
        ([record("ort-fp32", 20, 1.0, baseline=True), record("ort-int8", 5, 0.99, error="died")], "ort-fp32"),
        ([record("ort-fp32", 20, 1.0, baseline=True), record("ort-int8", 5, None)], "ort-fp32"),
        (
            [record("ort-fp32", 20, 1.0, baseline=True), record("ort-int8", 9, 0.98)],
            "ort-int8",
        ),  # exactly at the budget
        ([], None),
    ],
    ids=["fastest-within", "none-within", "fp16-within", "failed-skipped", "unscored-skipped", "on-the-edge", "empty"],
)
def test_recommend(records, expected):
    assert recommend(records, max_drop=0.02, threads=2) == expected


@pytest.mark.parametrize(
    ("points", "front"),
    [
        ([(20.0, 1.0), (8.0, 0.99), (9.0, 0.95), (30.0, 1.0)], [1, 0]),
        ([(5.0, 0.5)], [0]),
        ([(5.0, 0.9), (5.0, 0.95), (4.0, 0.8)], [2, 1]),
        ([(1.0, 0.1), (2.0, 0.2), (3.0, 0.3)], [0, 1, 2]),
        ([], []),
    ],
    ids=["dominated-dropped", "single", "tie-on-latency", "all-on-front", "empty"],
)
def test_pareto_front(points, front):
    assert pareto_front(points) == front


# ----------------------------------------------------------------------------- bad input


def test_threads_zero_is_one_sentence():
    done = run_cli("bench", "nanodet-m", "--threads", "0")
    assert_clean_error(done, "--threads values must be 1 or more")


def test_unknown_variant_is_one_sentence(tiny_onnx):
    done = run_cli("bench", tiny_onnx, "--variants", "ort-fp64")
    assert_clean_error(done, "unknown variant(s) ort-fp64")


def test_variant_of_missing_backend_names_the_extra(tiny_onnx):
    code = (
        "import sys\n"
        "import edgevision.backends.litert as m\n"
        "m.LiteRtBackend.is_available = classmethod(lambda cls: False)\n"
        "from edgevision.cli import main\n"
        f"sys.argv = ['edgevision', 'bench', {str(tiny_onnx)!r}, '--variants', 'ort-fp32,litert-int8']\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert_clean_error(done, "litert-int8", "pip install 'edgevision[litert]'")


def test_annotations_that_match_no_image(tiny_onnx, image_folder, tmp_path):
    coco = tmp_path / "coco.json"
    coco.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "elsewhere.jpg", "width": 8, "height": 8}],
                "annotations": [],
                "categories": [{"id": 1, "name": "person"}],
            }
        )
    )
    done = run_cli("bench", tiny_onnx, "--variants", "ort-fp32", "--data", image_folder, "--annotations", coco)
    assert_clean_error(done, "annotates none of the 3 images")


def test_annotations_that_are_not_coco(tiny_onnx, image_folder, tmp_path):
    bad = tmp_path / "coco.json"
    bad.write_text("[1, 2]")
    done = run_cli("bench", tiny_onnx, "--variants", "ort-fp32", "--data", image_folder, "--annotations", bad)
    assert_clean_error(done, "is not a COCO annotations file")


def test_annotations_match_by_file_name(tmp_path):
    from edgevision.benchmark.api import match_annotations

    coco = tmp_path / "coco.json"
    coco.write_text(json.dumps({"images": [{"id": 7, "file_name": "a/b/img1.png"}], "annotations": []}))
    _, indices, ids = match_annotations(coco, ["x/img0.png", "y/img1.png"])
    assert (indices, ids) == ([1], [7])


def test_raw_outputs_pair_by_size_when_a_converter_renames_and_reorders_them():
    from edgevision.benchmark.score import agreement

    boxes, scores = np.ones((1, 10, 4), np.float32), np.arange(80, dtype=np.float32).reshape(1, 10, 8)
    reference = {"task": "raw", "outputs": [{"boxes": boxes, "scores": scores}]}
    candidate = {"task": "raw", "outputs": [{"Identity_1": scores, "Identity": boxes}]}
    value, metric = agreement(reference, candidate)
    assert value == pytest.approx(1.0) and "cosine" in metric


def test_pose_models_are_scored_on_photos_of_large_people_by_default(samples_cache):
    from edgevision.benchmark.data import load_data
    from edgevision.samples import POSE_PHOTOS

    pose, other = load_data(None, 24, task="pose"), load_data(None, 24, task="detection")
    assert len(pose.images) == 4 * len(POSE_PHOTOS)  # each photo, mirrored, and their centre crops
    assert {name.split(":view")[0] for name in pose.names} == set(POSE_PHOTOS)
    assert len(other.images) == 24 and any(name.startswith("vtest.avi#") for name in other.names)  # + video frames
