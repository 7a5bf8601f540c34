"""Inference in worker processes (``run --isolate``, ``load(isolate=True)``)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import load_benchmark, run_cli, walkway_run


def _records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _ended(process: subprocess.Popen, within: float = 15.0) -> bool:
    try:
        process.wait(timeout=within)
        return True
    except subprocess.TimeoutExpired:
        return False


def _gone(pid: int, within: float = 15.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_an_isolated_run_gives_the_same_detections_tracks_and_events(clip, tmp_path):
    results = {}
    for isolate in (False, True):
        detections, events, summary = walkway_run(clip, tmp_path / str(isolate), threads=1, isolate=isolate)
        assert summary.isolated is isolate and summary.workers == 1
        results[isolate] = (detections, events, summary.event_counts)
    detections, _, counts = results[True]
    assert [r["frame"] for r in detections] == list(range(40))
    assert sum(counts.values()) > 0  # the clip has events, so the comparison says something
    assert results[True] == results[False]


def test_each_worker_is_a_process_with_two_frames_in_flight_and_close_ends_them(first_frame):
    import edgevision
    from edgevision.errors import EdgevisionError
    from edgevision.zoo.isolate import IN_FLIGHT, count_workers, worker_process

    model = edgevision.load("nanodet-m", threads=2, workers=2, isolate=True)
    processes = {id(worker_process(p)): worker_process(p) for p in model.predictors}
    assert len(model.predictors) == 2 * IN_FLIGHT and len(processes) == 2 == count_workers(model.predictors)
    assert {p.backends[0].threads for p in model.predictors} == {1}  # the threads shared out, as in-process
    assert model.class_names == edgevision.load("nanodet-m").class_names and model.runtime == "onnxruntime"
    local = edgevision.load("nanodet-m", threads=1).predict(first_frame)
    for predictor in model.predictors:  # every slot of every process infers, and alike
        found = predictor(first_frame)
        assert len(found) == len(local) > 0 and np.allclose(found.xyxy, local.xyxy)
    model.close()
    assert all(_ended(p.process) for p in processes.values())
    with pytest.raises(EdgevisionError, match="inference processes were closed; load the model again"):
        model.predict(first_frame)


def test_frames_of_any_size_go_through(first_frame):
    import cv2

    import edgevision

    local = edgevision.load("nanodet-m", threads=1)
    with edgevision.load("nanodet-m", threads=1, isolate=True) as model:
        for image in (cv2.resize(first_frame, (1920, 1080)), first_frame[:120, :160], first_frame):
            found, want = model.predict(image), local.predict(image)  # larger, smaller, back again
            assert len(found) == len(want) and np.allclose(found.xyxy, want.xyxy)


def test_a_model_the_process_cannot_load_is_one_sentence():
    from edgevision.errors import EdgevisionError
    from edgevision.zoo.assemble import load_predictor
    from edgevision.zoo.isolate import InferenceProcess

    with pytest.raises(EdgevisionError, match="could not load no-such-model: .*no-such-model"):
        InferenceProcess(load_predictor, "no-such-model", {})


def test_a_failed_frame_is_one_sentence_and_the_process_goes_on(first_frame):
    import edgevision
    from edgevision.errors import EdgevisionError

    with edgevision.load("nanodet-m", threads=1, isolate=True) as model:
        with pytest.raises(EdgevisionError, match="inference failed in its process: "):
            model.predict(np.zeros((8, 8, 7), np.uint8))  # no image has 7 channels
        assert len(model.predict(first_frame)) > 0


def test_a_process_that_dies_is_started_again_until_it_dies_too_often(first_frame, caplog):
    import edgevision
    from edgevision.errors import EdgevisionError
    from edgevision.zoo.isolate import MAX_RESTARTS, worker_process

    with edgevision.load("nanodet-m", threads=1, isolate=True) as model:
        worker = worker_process(model.predictor)
        want = model.predict(first_frame)
        for restart in range(1, MAX_RESTARTS + 1):
            dead = worker.process
            dead.kill()
            dead.wait()
            with caplog.at_level("WARNING", logger="edgevision.zoo.isolate"):  # whatever earlier tests set
                found = model.predict(first_frame)  # sent again to a new process
            assert worker.generation == restart and worker.process.pid != dead.pid
            assert np.allclose(found.xyxy, want.xyxy)
        assert f"exit code -{signal.SIGKILL.value}); starting it again" in caplog.text
        worker.process.kill()
        worker.process.wait()
        with pytest.raises(EdgevisionError, match=r"ended unexpectedly \(exit code -9\)"):
            model.predict(first_frame)


def test_a_run_whose_worker_is_killed_loses_no_frame(clip, tmp_path):
    """Both frames in flight go to the new process: every frame is there, as without the kill."""
    import edgevision
    from edgevision.pipeline.run import RunConfig, RunOutputs
    from edgevision.zoo.isolate import worker_process

    want, _, _ = walkway_run(clip, tmp_path / "clean", threads=1)
    killed = []

    def kill_once(progress) -> None:
        if progress.frames >= 5 and not killed:
            killed.append(worker_process(model.predictor).process.pid)
            worker_process(model.predictor).process.kill()

    out = tmp_path / "killed.jsonl"
    with edgevision.load("nanodet-m", threads=1, isolate=True) as model:
        summary = edgevision.run(
            model,
            str(clip),
            config=RunConfig(progress_every=0.05),
            outputs=RunOutputs(json_lines=str(out)),
            on_progress=kill_once,
        )
        assert killed and worker_process(model.predictor).generation == 1
    assert summary.frames == 40
    assert [r["objects"] for r in _records(out)] == [r["objects"] for r in want]


def test_the_worker_process_ends_with_its_parent_whatever_ends_it(tmp_path):
    """The worker ignores stop signals (its parent finishes the run first), so it must end
    when the parent is killed outright, and its shared memory must not stay behind."""
    code = """
import sys
import edgevision
from edgevision.zoo.isolate import worker_process
model = edgevision.load("nanodet-m", threads=1, isolate=True)
print(worker_process(model.predictor).process.pid, flush=True)
sys.stdin.read()
"""
    parent = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        worker = int(parent.stdout.readline())
        os.killpg(parent.pid, signal.SIGTERM)  # as a service manager stops the whole group
        assert _ended(parent)
        assert _gone(worker), "the worker process outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()


def test_run_isolate_stops_cleanly_on_sigterm_to_the_whole_group(samples_cache, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "edgevision", "run", "nanodet-m", "--source", str(samples_cache["vtest.avi"])]
    command += ["--threads", "1", "--isolate", "--json", str(out / "d.jsonl"), "--stats", str(out / "stats.json")]
    run = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        seen = []
        for line in run.stderr:  # a progress line every 2 s
            seen.append(line)
            if re.match(r"^run: [1-9]\d* frames ", line):
                break
        os.killpg(run.pid, signal.SIGTERM)  # as a service manager stops the whole group
        stderr = "".join(seen) + run.stderr.read()
        run.wait(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0 and "Traceback" not in stderr, stderr[-3000:]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["stopped_by"] == "SIGTERM" and stats["isolated"] is True
    assert 0 < stats["frames"] < 795  # stopped early, with the worker still inferring the frames in flight
    assert [r["frame"] for r in _records(out / "d.jsonl")] == list(range(stats["frames"]))


def test_run_command_says_inference_ran_in_its_own_process(short_video, tmp_path):
    done = run_cli("run", "nanodet-m", "-s", short_video, "--isolate", "--stats", tmp_path / "stats.json")
    assert done.returncode == 0, done.stderr
    assert "(inference in a process of its own)" in done.stderr
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["isolated"] is True and stats["frames"] == 12 and stats["stage_ms"]["inference"] > 0


def test_the_benchmark_counts_a_worker_processs_cpu():
    bench = load_benchmark("pipeline_throughput")
    spin = subprocess.Popen([sys.executable, "-c", "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass\ninput()"], stdin=subprocess.PIPE)  # fmt: skip
    try:
        time.sleep(1.5)
        assert 0.4 < bench.process_cpu_seconds(spin.pid) < 1.5
    finally:
        spin.kill()
        spin.wait()


def test_what_the_process_prints_goes_to_stderr_never_to_stdout(capfd):
    """``run --json -`` writes JSON lines to stdout: a runtime's chatter must not land in them."""
    from edgevision.zoo.isolate import InferenceProcess

    worker = InferenceProcess(print, "chatter-from-the-worker", {})  # print as the loader: it prints, loads nothing
    worker.close()
    out, err = capfd.readouterr()
    assert "chatter-from-the-worker" in err and "chatter-from-the-worker" not in out


def test_watch_with_isolate_goes_on_when_its_worker_is_killed(tmp_path, samples_cache):
    """A runtime that crashes must not end a service meant to run for months."""
    from conftest import write_first_frames
    from test_watch_service import fetch_json, free_port, poll, start_watch, write_config

    clip = write_first_frames(samples_cache["vtest.avi"], tmp_path / "walkway.avi", 60)
    port = free_port()
    config = write_config(tmp_path, clip, port)
    config.write_text(json.dumps({**json.loads(config.read_text()), "isolate": True}))
    checked = run_cli("watch", config, "--check")
    assert (
        checked.returncode == 0
        and "model nanodet-m (inferring in a process of its own)" in checked.stdout + checked.stderr
    )
    log = tmp_path / "stderr.txt"
    watch = start_watch(config, log)
    base = f"http://127.0.0.1:{port}"

    def inferred() -> int:
        return sum(c["inferred_frames"] for c in fetch_json(f"{base}/api/cameras") or [])

    try:
        poll(lambda: watch.poll() is not None or fetch_json(f"{base}/api/health"), timeout=60)
        assert watch.poll() is None, log.read_text()[-3000:]
        poll(lambda: inferred() > 5, timeout=60)
        children = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(watch.pid)], capture_output=True, text=True)
        workers = [int(line.split()[0]) for line in children.stdout.splitlines() if "edgevision.zoo.isolate" in line]
        assert len(workers) == 1, children.stdout  # one model, one worker
        os.kill(workers[0], signal.SIGKILL)
        poll(lambda: "starting it again" in log.read_text(), timeout=60)
        before = inferred()
        poll(lambda: inferred() > before + 10, timeout=60)  # inferring again
        assert watch.poll() is None and "Traceback" not in log.read_text()
        watch.send_signal(signal.SIGTERM)
        assert watch.wait(timeout=15) == 0
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()


def test_calls_from_several_threads_take_turns_on_one_slot(first_frame):
    import threading

    import edgevision

    images = [np.ascontiguousarray(np.roll(first_frame, 60 * k, axis=1)) for k in range(4)]  # one scene each
    local = edgevision.load("nanodet-m", threads=1)
    want = [local.predict(image) for image in images]
    found: dict[int, list] = {k: [] for k in range(4)}
    errors = []

    def predict(model, k: int) -> None:
        try:
            for _ in range(5):
                found[k].append(model.predict(images[k]))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    with edgevision.load("nanodet-m", threads=1, isolate=True) as model:
        threads = [threading.Thread(target=predict, args=(model, k)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors, errors
    for k in range(4):  # each thread got its own scene's answer, never another's
        assert len(found[k]) == 5
        assert all(len(f) == len(want[k]) and np.allclose(f.xyxy, want[k].xyxy) for f in found[k])
