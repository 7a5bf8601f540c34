"""Several copies of a model inferring successive frames at once (``run --workers``)."""

from __future__ import annotations

import json
import random
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import load_benchmark, run_cli, walkway_run
from edgevision.pipeline.stages import Pipe, StageGroup


def _run_parallel(items: list, works: list, *, size: int = 2) -> list:
    group = StageGroup()
    inbox, outbox = Pipe(size), Pipe(size)
    out: list = []
    group.produce("items", iter(items), inbox)
    group.parallel_stage("work", works, inbox, outbox)
    group.stage("collect", out.append, outbox, None)
    group.join()
    return out


@settings(max_examples=25, deadline=None)
@given(
    delays=st.lists(st.integers(min_value=0, max_value=3), min_size=0, max_size=30),
    workers=st.integers(min_value=1, max_value=4),
    size=st.integers(min_value=1, max_value=3),
)
def test_parallel_stage_hands_every_item_on_in_order_whatever_each_takes(delays, workers, size):
    # each item sleeps its own time, so later items often finish first
    def work(item):
        index, delay = item
        time.sleep(delay / 1000)
        return index

    out = _run_parallel(list(enumerate(delays)), [work] * workers, size=size)
    assert out == list(range(len(delays)))


def test_each_worker_calls_only_its_own_function_from_one_thread():
    seen: dict[int, set[str]] = {0: set(), 1: set(), 2: set()}

    def worker(index):
        def work(item):
            seen[index].add(threading.current_thread().name)
            time.sleep(random.random() / 500)
            return item

        return work

    out = _run_parallel(list(range(60)), [worker(i) for i in range(3)])
    assert out == list(range(60))
    assert all(len(names) == 1 for names in seen.values()), seen  # one thread per copy
    assert len(set.union(*seen.values())) == 3  # and every copy took frames


def test_results_that_are_none_are_dropped_and_order_kept():
    out = _run_parallel(list(range(20)), [lambda x: x if x % 3 else None] * 2)
    assert out == [x for x in range(20) if x % 3]


def test_an_error_in_one_worker_stops_the_stage_and_is_raised():
    def work(item):
        if item == 7:
            raise ValueError("frame 7 broke")
        time.sleep(0.001)
        return item

    group = StageGroup()
    inbox, outbox = Pipe(2), Pipe(2)
    out: list = []
    group.produce("items", iter(range(1000)), inbox)
    group.parallel_stage("work", [work] * 2, inbox, outbox)
    group.stage("collect", out.append, outbox, None)
    start = time.perf_counter()
    with pytest.raises(ValueError, match="frame 7 broke"):
        group.join()
    group.stop()
    assert time.perf_counter() - start < 5  # no worker waits forever for frame 7's turn
    assert out == list(range(len(out))) and len(out) <= 7


def test_load_shares_the_threads_among_the_copies():
    import edgevision

    model = edgevision.load("nanodet-m", threads=2, workers=2)
    assert len(model.predictors) == 2 and model.predictors[0] is model.predictor
    assert model.predictors[0] is not model.predictors[1]
    assert [p.backends[0].threads for p in model.predictors] == [1, 1]
    single = edgevision.load("nanodet-m", threads=2)
    assert single.predictors == (single.predictor,) and single.predictor.backends[0].threads == 2


def test_workers_below_one_is_one_sentence():
    import edgevision
    from edgevision.errors import EdgevisionError

    with pytest.raises(EdgevisionError, match="workers must be 1 or more, got 0"):
        edgevision.load("nanodet-m", workers=0)


def _records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_workers_give_the_same_detections_tracks_and_events_as_one(clip, tmp_path):
    results = {}
    for workers in (1, 2):
        # one thread a copy either way, so the numbers match to the bit
        detections, events, summary = walkway_run(clip, tmp_path / f"w{workers}", threads=workers, workers=workers)
        results[workers] = (detections, events, summary.event_counts)
    detections, events, counts = results[2]
    assert [r["frame"] for r in detections] == list(range(40))  # every frame, in order
    assert any(obj.get("track_id") for r in detections for obj in r["objects"])
    assert results[1] == results[2]
    assert sum(counts.values()) > 0  # the clip has events, so the comparison says something


def test_run_command_takes_workers_and_refuses_zero(short_video, tmp_path):
    done = run_cli(
        "run", "nanodet-m", "-s", short_video, "--workers", "2", "--json", tmp_path / "d.jsonl",
        "--stats", tmp_path / "stats.json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "(inference: one frame in one of 2 workers)" in done.stderr
    assert json.loads((tmp_path / "stats.json").read_text())["workers"] == 2
    assert [r["frame"] for r in _records(tmp_path / "d.jsonl")] == list(range(12))
    refused = run_cli("run", "nanodet-m", "-s", short_video, "--workers", "0")  # typer's usage error, like --stride 0
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "'--workers': Input should be greater than or equal to 1" in refused.stderr


def test_the_benchmark_times_copies_side_by_side(short_video):
    from edgevision.pipeline.capture import open_source
    from edgevision.zoo.assemble import load_predictor

    bench = load_benchmark("pipeline_throughput")
    capture = open_source(str(short_video))
    frames = []
    while (frame := capture.read()) is not None:
        frames.append(frame.image)
    capture.close()
    calls = []

    def copy(index):
        model = load_predictor("nanodet-m", threads=1)

        def predict(image):
            calls.append(index)
            return model(image)

        return predict

    fps, cpu_ms = bench.model_only_fps([copy(0), copy(1)], frames)
    assert fps > 0 and cpu_ms > 0
    assert sorted(calls) == [0] * 6 + [1] * 6  # every frame once, every other one on each copy


def test_openvino_runs_the_workers_on_the_streams_of_one_compiled_model():
    import edgevision

    model = edgevision.load("nanodet-m", backend="openvino", threads=2, workers=2)
    assert model.predictors == (model.predictor, model.predictor)  # one model, called from both workers
    backend = model.predictor.backends[0]
    assert backend.streams == 2 and backend.threads == 1
    assert backend.settings["NUM_STREAMS"] == 2 and backend.settings["INFERENCE_NUM_THREADS"] == 2


def test_openvino_streams_give_each_thread_its_own_request_and_the_same_numbers(first_frame):
    from edgevision.backends import use_streams
    from edgevision.zoo.assemble import load_predictor

    with use_streams(2):
        shared = load_predictor("nanodet-m", backend="openvino", threads=1)
    alone = load_predictor("nanodet-m", backend="openvino", threads=1)
    frames = [first_frame, first_frame[:, ::-1].copy(), first_frame[::-1].copy()] * 4
    expected = [alone(f) for f in frames]
    got: dict[int, object] = {}

    def work(start: int) -> None:
        for i in range(start, len(frames), 2):
            got[i] = shared(frames[i])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, want in enumerate(expected):
        assert got[i].xyxy.shape == want.xyxy.shape and len(want) > 0
        assert abs(got[i].xyxy - want.xyxy).max() < 0.5 and abs(got[i].scores - want.scores).max() < 1e-3


def test_more_workers_than_cores_is_said_once(caplog):
    from edgevision.checks import usable_cores
    from edgevision.zoo.assemble import load_workers

    too_many = usable_cores() + 1
    with caplog.at_level("WARNING", logger="edgevision.zoo.assemble"):
        predictors = load_workers("nanodet-m", workers=too_many, threads=1)
    assert len(predictors) == too_many
    assert f"{too_many} workers of 1 thread(s) each, but only {usable_cores()} core(s) are usable" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="edgevision.zoo.assemble"):
        load_workers("nanodet-m", workers=2, threads=2)
    assert "usable" not in caplog.text or usable_cores() < 2
