"""`edgevision demo` end to end on a shortened run: bench, recommendation, video, events."""

from __future__ import annotations

import json

import cv2
import pytest

from conftest import fastest_within_budget
from edgevision.benchmark.api import TimingOptions
from edgevision.demo import DemoOptions, run_demo


@pytest.mark.slow
def test_demo_writes_report_video_events_and_summary(tmp_path, samples_cache):
    options = DemoOptions(
        variants="ort-fp32,openvino-fp32",
        max_frames=120,
        timing=TimingOptions(rounds=2, round_seconds=0.3, pipeline_seconds=0.2),
    )
    summary = run_demo(tmp_path, options=options)
    bench = json.loads((tmp_path / "bench" / "results.json").read_text())
    threads = max(bench["settings"]["threads"])
    assert summary.variant == fastest_within_budget(
        bench["variants"], max_drop=bench["settings"]["max_drop"], threads=threads
    )
    assert (tmp_path / "bench" / "report.html").stat().st_size > 10_000
    cap = cv2.VideoCapture(str(tmp_path / "vtest-annotated.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 120
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert events and all(e["zone"] == "path-count" and e["class"] == "person" for e in events)
    assert all((tmp_path / e["snapshot"]).exists() for e in events)
    text = (tmp_path / "summary.txt").read_text()
    assert f"recommended variant: {summary.variant}" in text and "events:" in text
