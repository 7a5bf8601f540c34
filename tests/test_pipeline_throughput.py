"""The pipeline benchmark: the CPU bound it prints, its counts, and the parts --without leaves out."""

from __future__ import annotations

import json

import pytest

from conftest import load_benchmark as load


def test_the_cpu_bound_is_cores_over_the_pipelines_cpu_per_frame_and_never_above_one():
    bench = load("pipeline_throughput")
    # 2 cores, 48 ms of CPU a frame: at most 41.7 fps, against 43.2 fps for the model alone
    assert bench.cpu_bound_ratio(43.2, 48.0, 2) == round(2000 / 48.0 / 43.2, 3)
    assert bench.cpu_bound_ratio(43.2, 48.0, 4) == 1.0  # room to spare: the model is the limit
    assert bench.cpu_bound_ratio(10.0, 400.0, 2) == 0.5


def test_counts_below_one_or_not_numbers_are_refused():
    import argparse

    bench = load("pipeline_throughput")
    assert bench.positive("300") == 300
    for text in ("0", "-3", "x", "2.5"):
        with pytest.raises(argparse.ArgumentTypeError, match="at least 1"):
            bench.positive(text)


@pytest.mark.parametrize("without", [frozenset(), frozenset({"video"}), frozenset({"tracking", "video"})])
def test_without_leaves_the_part_out_of_a_real_run(tmp_path, predictor, without):
    from edgevision.samples import sample_path

    bench = load("pipeline_throughput")
    summary = bench.pipeline_run([predictor], sample_path("vtest.avi"), 12, tmp_path, without=without)
    assert summary["frames"] == 12 and summary["cpu_ms"] > 0
    assert (tmp_path / "annotated.mp4").exists() == ("video" not in without)
    records = [json.loads(line) for line in (tmp_path / "detections.jsonl").read_text().splitlines()]
    tracked = any("track_id" in obj for record in records for obj in record["objects"])
    assert tracked == ("tracking" not in without)
