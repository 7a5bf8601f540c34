"""The watch service for real: an ``edgevision watch`` process on two looping videos, polled over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import frame_count, write_first_frames
from edgevision.watch import clips as clips_module
from edgevision.watch.camera import Camera
from edgevision.watch.clips import ClipRecorder
from edgevision.watch.config import CameraConfig, MotionConfig
from edgevision.watch.service import RoundRobin
from edgevision.watch.store import EventStore

SRC = Path(__file__).resolve().parents[1] / "src"
WALKWAY = [[0.0, 0.3], [1.0, 0.3], [1.0, 1.0], [0.0, 1.0]]  # the lower part of vtest.avi, where people walk


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll(get, *, timeout: float, every: float = 0.3):
    """``get()``'s first truthy answer; fails after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answer := get():
            return answer
        time.sleep(every)
    pytest.fail(f"nothing came within {timeout} s")


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def fetch_json(url: str):
    status, body = fetch(url)
    return json.loads(body) if status == 200 else None


@pytest.fixture(scope="module")
def looping_clip(samples_cache, tmp_path_factory) -> Path:
    """60 frames (6 s at 10 fps) of the pedestrian video, as an MJPG .avi."""
    return write_first_frames(samples_cache["vtest.avi"], tmp_path_factory.mktemp("watch") / "walkway.avi", 60)


def write_config(folder: Path, clip: Path, port: int) -> Path:
    camera = {
        "source": str(clip),
        "loop": True,
        "zones": {"walkway": WALKWAY},
        "lines": {"middle": {"points": [[0.5, 0.0], [0.5, 1.0]]}},  # people walk across it
    }
    config = {
        "model": "nanodet-m",
        "storage": {"path": str(folder / "data")},
        "cameras": {"left": camera, "right": camera},
        "web": {"bind": "127.0.0.1", "port": port},
    }
    path = folder / "watch.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def start_watch(config: Path, log: Path) -> subprocess.Popen:
    """``edgevision watch config`` in a process of its own, its stderr appended to ``log``."""
    with open(log, "a") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "edgevision", "watch", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, "PYTHONPATH": str(SRC)},
        )


@pytest.fixture
def watching(tmp_path, looping_clip):
    """A running ``edgevision watch`` process: (process, base URL, config path, its stderr file)."""
    port = free_port()
    config = write_config(tmp_path, looping_clip, port)
    log = tmp_path / "stderr.txt"
    process = start_watch(config, log)
    base = f"http://127.0.0.1:{port}"
    try:
        poll(lambda: process.poll() is not None or fetch_json(f"{base}/api/health"), timeout=60)
        assert process.poll() is None, log.read_text()
        yield process, base, config, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_two_cameras_give_events_with_snapshots_and_clips(watching, tmp_path):
    process, base, _, log = watching
    with_clip = poll(lambda: [e for e in fetch_json(f"{base}/api/events") or [] if e["clip"]], timeout=40)
    event = with_clip[0]
    assert {"id", "camera", "type", "time"} <= event.keys() and event["camera"] in ("left", "right")
    status, jpeg = fetch(base + event["snapshot"])
    assert status == 200 and cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (576, 768, 3)
    status, mp4 = fetch(base + event["clip"])
    (tmp_path / "clip.mp4").write_bytes(mp4)
    frames = frame_count(tmp_path / "clip.mp4")
    assert status == 200 and frames >= 20  # ~2 s before and ~2 s after, at 10 fps
    assert 0 <= event["clip_offset"] <= frames / 10  # where in its clip (events close in time share one)

    cameras = {c["name"]: c for c in fetch_json(f"{base}/api/cameras")}
    assert set(cameras) == {"left", "right"}
    for camera in cameras.values():
        assert camera["state"] == "running" and camera["fps"] > 0 and 0 <= camera["motion_fraction"] <= 1
        assert 0 < camera["inferred_frames"] <= camera["captured_frames"]
        assert set(camera["occupancy"]) == {"walkway"} and camera["occupancy"]["walkway"] >= 0
        assert set(camera["line_counts"]) == {"middle"} and set(camera["line_counts"]["middle"]) == {"in", "out"}
    for crossing in fetch_json(f"{base}/api/events?type=cross") or []:
        assert crossing["zone"] == "middle" and crossing["direction"] in ("in", "out")
    now = time.time()
    assert all(now - 120 < e["time"] <= now + 1 for e in fetch_json(f"{base}/api/events"))  # wall-clock seconds
    # one inference thread serves both cameras in turn: neither is starved
    assert min(c["inferred_frames"] for c in cameras.values()) >= 0.5 * max(
        c["inferred_frames"] for c in cameras.values()
    )

    left = fetch_json(f"{base}/api/events?camera=left&type=enter")
    assert left and {(e["camera"], e["type"]) for e in left} == {("left", "enter")}
    assert fetch_json(f"{base}/api/events?since={time.time() + 3600}") == []
    assert fetch(f"{base}/api/events/999999/snapshot.jpg")[0] == 404
    status, latest = fetch(f"{base}/api/cameras/right/latest.jpg")
    assert status == 200 and latest[:3] == b"\xff\xd8\xff"
    assert fetch(f"{base}/api/cameras/nobody/latest.jpg")[0] == 404

    service = fetch_json(f"{base}/api/service")
    assert (service["inference_threads"], service["mqtt_unsent"]) == (1, None)  # no MQTT in this config
    assert service["clips_written"] >= 1 and 0 <= service["clips_fast_codec"] <= service["clips_written"]
    on_disk = sum(f.stat().st_size for f in (tmp_path / "data" / "media").rglob("*") if f.is_file())
    assert 0 < service["storage_bytes"] <= on_disk  # the files of stored events (a clip may be mid-write)
    families = {f.name: f for f in text_string_to_metric_families(fetch(f"{base}/metrics")[1].decode())}
    assert {s.labels["camera"] for s in families["edgevision_watch_fps"].samples} == {"left", "right"}
    assert families["edgevision_watch_inference_threads"].samples[0].value == 1
    assert families["edgevision_watch_clips_written"].samples[0].value >= 1
    assert families["edgevision_watch_storage_bytes"].samples[0].value > 0
    assert "edgevision_watch_mqtt_unsent" not in families
    assert families["edgevision_watch_storage_ok"].samples[0].value == 1
    assert (service["storage_problem"], service["events_not_stored"]) == (None, 0) and service["storage_free_bytes"] > 0
    assert sum(s.value for s in families["edgevision_watch_events"].samples if s.name.endswith("_total")) >= 1
    assert {s.labels["quantile"] for s in families["edgevision_watch_inference_ms"].samples} == {"0.50", "0.95"}

    start = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=5) == 0, log.read_text()
    assert time.monotonic() - start < 5
    assert "Traceback" not in log.read_text()


def test_sighup_with_a_bad_config_keeps_the_old_one(watching):
    process, base, config, log = watching
    good = config.read_text()
    config.write_text("cameras: {left: {source: nowhere.avi}}")
    process.send_signal(signal.SIGHUP)
    poll(lambda: "refused" in log.read_text(), timeout=10)
    assert len([line for line in log.read_text().splitlines() if "refused" in line]) == 1
    assert {c["name"] for c in fetch_json(f"{base}/api/cameras")} == {"left", "right"}

    config.write_text(good.replace('"right"', '"third"'))
    process.send_signal(signal.SIGHUP)
    statuses = []

    def reloaded() -> bool:
        status, body = fetch(f"{base}/api/cameras")
        statuses.append(status)
        return status == 200 and {c["name"] for c in json.loads(body)} == {"left", "third"}

    poll(reloaded, timeout=20, every=0.02)
    assert set(statuses) <= {200, 503}  # while it reloads the API says "try again", never fails
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=5) == 0, log.read_text()


def test_kill_9_then_restart_loses_no_event_and_counts_tracks_on(watching, looping_clip, tmp_path):
    process, base, config, log = watching
    poll(lambda: len([e for e in fetch_json(f"{base}/api/events") or [] if e["clip"]]) >= 2, timeout=60)
    process.kill()  # kill -9: no handler runs, clips being written are cut off
    process.wait()
    with EventStore(tmp_path / "data") as store:  # opening recovers what the kill left
        before = {e.id: e for e in store.events(limit=10_000)}
        assert any(e.snapshot for e in before.values())
        for event in before.values():  # an event is committed first, its snapshot and clip follow
            if event.snapshot:
                assert (store.folder / event.snapshot).stat().st_size > 0
            if event.clip:
                assert frame_count(store.folder / event.clip) > 0  # a referenced clip is a whole file
        last_track = {c: store.last_track_id(c) for c in ("left", "right")}
        crossed = store.line_counts()
    assert before and max(last_track.values()) > 0

    again = start_watch(config, log)
    try:
        newer = poll(
            lambda: [e for e in fetch_json(f"{base}/api/events?limit=1000") or [] if e["id"] > max(before)], timeout=60
        )
        after = {e["id"] for e in fetch_json(f"{base}/api/events?limit=1000")}
        assert set(before) <= after  # every event committed before the kill is still there
        assert all(e["track_id"] > last_track[e["camera"]] for e in newer)  # a new track never takes an old id
        shown = {c["name"]: c["line_counts"]["middle"] for c in fetch_json(f"{base}/api/cameras")}
        for (camera, _, direction), n in crossed.items():  # counts go on from what was stored
            assert shown[camera][direction] >= n
        again.send_signal(signal.SIGTERM)
        assert again.wait(timeout=5) == 0, log.read_text()
    finally:
        if again.poll() is None:
            again.kill()
            again.wait()
    assert "Traceback" not in log.read_text()


def test_round_robin_serves_every_ready_camera_in_turn():
    turns = RoundRobin(["a", "b", "c"])
    picks = [turns.pick(lambda _: True) for _ in range(300)]
    assert [picks.count(x) for x in "abc"] == [100, 100, 100]
    busy = RoundRobin(["a", "b", "c"])
    picks = [busy.pick(lambda x, i=i: x == "a" or i % 3 == 0) for i in range(30)]  # a always has a frame
    assert picks.count("b") + picks.count("c") >= 9
    assert RoundRobin(["a"]).pick(lambda _: False) is None


def _recorded(events: dict[int, int], frames: int, **options) -> list:
    """The clips delivered when ``events`` ({frame index: event id}) happen among ``frames`` frames at 10 fps."""
    delivered = []
    clips = ClipRecorder(fps=10, deliver=delivered.append, **options)
    for k in range(frames):
        clips.add(np.full((20, 40, 3), k % 256, np.uint8))
        if k in events:
            clips.start(events[k])
    clips.flush()
    return delivered


def _frame_numbers(clip) -> list[int]:
    return [int(f[0, 0, 0]) for f in clip.frames]


def test_clip_holds_frames_before_and_after_the_event():
    (clip,) = _recorded({29: 7}, 40, before_s=1.0, after_s=0.5)
    assert (clip.event_ids, clip.fps) == ((7,), 10)
    assert _frame_numbers(clip) == list(range(20, 35))  # 1 s before, 0.5 s after
    assert clip.offsets == (0.9,)  # the event's frame is the tenth


def test_events_while_a_clip_is_open_share_it_until_two_seconds_after_the_last():
    (clip,) = _recorded({29: 7, 35: 8, 44: 9}, 100, before_s=2.0, after_s=2.0)
    assert clip.event_ids == (7, 8, 9)
    assert _frame_numbers(clip) == list(range(10, 65))  # 2 s before the first, 2 s after the last
    assert clip.offsets == (1.9, 2.5, 3.4)  # each event at its own frame
    for offset, frame in zip(clip.offsets, (29, 35, 44)):
        assert _frame_numbers(clip)[round(offset * clip.fps)] == frame
    # an event after the clip closed opens a new one
    first, second = _recorded({29: 7, 60: 8}, 100, before_s=2.0, after_s=2.0)
    assert (first.event_ids, second.event_ids) == ((7,), (8,))
    assert _frame_numbers(second) == list(range(41, 81))


def test_a_busy_scene_starts_a_new_clip_at_the_longest_clip(monkeypatch):
    monkeypatch.setattr(clips_module, "MAX_CLIP_S", 6.0)
    events = {k: k for k in range(20, 200, 5)}  # an event every half second, for 18 s
    delivered = _recorded(events, 260, before_s=2.0, after_s=2.0)
    assert len(delivered) > 2
    assert all(len(c.frames) <= 60 for c in delivered)  # none longer than 6 s
    assert [i for c in delivered for i in c.event_ids] == list(events.values())  # each event in one clip, in order
    for clip in delivered:
        for offset, event_id in zip(clip.offsets, clip.event_ids):
            assert _frame_numbers(clip)[round(offset * clip.fps)] == event_id  # event k at frame k


def test_a_camera_whose_file_goes_away_reconnects_then_runs_again(tmp_path):
    video, away = tmp_path / "door.avi", tmp_path / "away.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 20, (64, 48))
    for k in range(6):  # 0.3 s, so the loop reopens the file often
        writer.write(np.full((48, 64, 3), 40 * k, np.uint8))
    writer.release()
    camera = Camera("door", CameraConfig(source=str(video), loop=True), on_ready=lambda: None, deliver=print)
    camera.start()
    try:
        poll(lambda: camera.state == "running" and camera.captured > 6, timeout=10, every=0.05)
        video.rename(away)
        poll(lambda: camera.state == "reconnecting", timeout=5, every=0.05)
        before = camera.captured
        away.rename(video)
        poll(lambda: camera.state == "running" and camera.captured > before, timeout=10, every=0.05)
    finally:
        camera.stop()
        camera.join(2)
    assert camera.state == "stopped"


def test_an_unpaced_file_gives_the_model_every_frame_on_the_file_clock(tmp_path):
    video = tmp_path / "steps.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for k in range(30):  # 3 s at 10 fps
        writer.write(np.full((48, 64, 3), 8 * k, np.uint8))
    writer.release()
    config = CameraConfig(source=str(video), motion=MotionConfig(enabled=False))  # every frame is worth the model
    camera = Camera("door", config, on_ready=lambda: None, deliver=print, paced=False)
    taken = []
    start = time.monotonic()
    camera.start()
    try:
        while camera.state != "stopped" or camera.ready:
            frame = camera.take()
            if frame is not None:
                taken.append(frame)
                time.sleep(0.01)  # a model slower than reading: the camera must wait, not drop
            time.sleep(0.001)
    finally:
        camera.stop()
        camera.join(2)
    assert time.monotonic() - start < 2.5  # faster than the file's 3 s
    assert [f.index for f in taken] == list(range(30)) and camera.dropped == 0 and camera.captured == 30
    steps = np.diff([f.captured for f in taken])
    assert np.allclose(steps, 0.1)  # the file's clock, whatever the machine's
