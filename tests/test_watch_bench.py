"""The watch benchmarks on tiny inputs: their core functions still run and report sane numbers."""

from __future__ import annotations

import pytest

from conftest import load_benchmark as load


@pytest.mark.slow
def test_motion_benchmark_on_20_frames(samples_cache, tmp_path):
    bench = load("watch_motion")
    runs = bench.measure(20, "nanodet-m", tmp_path)
    by = {(r.scene, r.gating): r for r in runs}
    assert set(by) == {(s, g) for s in ("still", "busy") for g in (True, False)}
    for run in runs:
        assert run.captured == 20 and 0 < run.inferred <= run.captured and run.cpu_s > 0
    assert by["still", False].inferred == 20  # ungated: every frame goes to the model
    assert by["still", True].inferred == 1  # the first frame; the next keyframe is due at 2 s, frame 20
    assert by["busy", True].inferred > by["still", True].inferred  # people walking pass the gate
    (saving, _), (entries, _) = bench.checks(runs)
    assert saving
    assert "| still | on | 20 |" in bench.table(runs)


def test_entries_are_matched_by_time_within_the_tolerance():
    bench = load("watch_motion")
    assert bench.unmatched([1.0, 2.0], [2.3, 1.1]) == []
    assert bench.unmatched([1.0, 2.0], [1.0]) == [2.0]
    assert bench.unmatched([1.0], [1.0 + bench.TOLERANCE_S + 0.1]) == [1.0]
    assert bench.unmatched([1.0, 1.1], [1.05]) == [1.1]  # one found entry answers one expected entry


@pytest.mark.slow
def test_soak_for_8_seconds(samples_cache, tmp_path):
    bench = load("watch_soak")
    result = bench.soak(8, 2, tmp_path)
    assert len(result.samples) >= 2
    for s in result.samples:
        assert 50 < s.rss_mb < 4000 and s.open_files > 3 and s.threads > 3 and s.events >= 0 and s.dropped >= 0
    assert [s.t for s in result.samples] == sorted(s.t for s in result.samples)
    summary = bench.summary(result, warmup=0)
    assert summary["exit_code"] == 0 and summary["exit_s"] < bench.EXIT_WITHIN_S
    assert summary["from_s"] < summary["to_s"]
    assert {"rss_growth_pct", "open_files_first", "open_files_last", "threads_first", "threads_last"} <= summary.keys()
    assert len(bench.checks(summary)) == 5


def test_soak_memory_counts_the_children_a_worker_process_included():
    import os
    import subprocess
    import sys

    bench = load("watch_soak")
    alone = bench.rss_mb(os.getpid())
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; block = bytearray(300 * 2**20); print(1, flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        child.stdout.readline()  # its 300 MB are resident
        assert child.pid in bench.children(os.getpid())
        assert bench.rss_mb(os.getpid()) - alone > 250
    finally:
        child.kill()
        child.wait()


@pytest.mark.slow
def test_workers_benchmark_on_20_frames_gives_the_same_events_per_setting(samples_cache, capsys):
    bench = load("watch_workers")
    assert bench.main(["--cameras", "2", "--frames", "20", "--rounds", "1", "--settings", "1", "2"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[1]: line.split() for line in out.splitlines() if line.startswith("workers ")}
    assert rows["1"][2] == "1" and rows["2"][2] == "2"  # inference threads
    assert float(rows["1"][3]) > 0 and rows["1"][-1] == "1.00x"
    assert rows["1"][6] == rows["2"][6]  # events
    assert 0 < int(rows["1"][7]) <= int(rows["1"][6])  # clip files: at most one per event
    assert out.rstrip().endswith("same events in every setting: yes")


@pytest.mark.parametrize(
    ("counts", "grew"),
    [
        ([16, 17, 16, 21, 17, 16, 16, 17, 17], False),  # clip files open and close between samples (16 -> 17)
        ([16, 17, 18, 19, 20, 21, 22, 23, 24], True),  # a leak: even the fewest rise
    ],
)
def test_open_files_count_a_leak_not_the_clips_in_flight(counts, grew):
    bench = load("watch_soak")
    samples = [
        bench.Sample(t=10.0 * k, rss_mb=500.0, open_files=n, threads=16, events=k, dropped=0)
        for k, n in enumerate(counts)
    ]
    summary = bench.summary(bench.Soak(samples=samples, exit_code=0, exit_s=1.0), warmup=0)
    passed = {text.split(" ")[0]: ok for ok, text in bench.checks(summary)}
    assert passed["open"] is not grew
