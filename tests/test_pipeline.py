"""`run` on the real pedestrian video: every frame out, one event per person entering, bad input."""

from __future__ import annotations

import json
import re
import socket
import threading

import cv2
import numpy as np
import pytest

from conftest import frame_count, run_cli
from edgevision.pipeline.stages import END, Pipe, StageGroup

# A zone over the paved path, checked by eye on the frames: in frames 172-261 of vtest.avi
# three people walk into it (a man in a striped sweater at ~176 walking left, a man in a
# dark jacket at ~214 walking left, a man in a black jacket at ~248 walking up-left).
PATH_ZONE = "path:300,185,420,185,420,330,300,310"
WINDOW = (172, 262)
ENTRIES = (176 - 172, 214 - 172, 248 - 172)  # frame of each entry within the clip


def cut(source, target, start: int, stop: int):
    cap = cv2.VideoCapture(str(source))
    cap.set(cv2.CAP_PROP_POS_FRAMES, start)
    writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"MJPG"), 10, (768, 576))
    for _ in range(stop - start):
        ok, frame = cap.read()
        assert ok
        writer.write(frame)
    writer.release()
    return target


@pytest.fixture(scope="module")
def path_clip(samples_cache, tmp_path_factory):
    """Frames 172-261 of the pedestrian video: three people walk into the path zone."""
    return cut(samples_cache["vtest.avi"], tmp_path_factory.mktemp("clip") / "path.avi", *WINDOW)


def test_stages_pass_every_item_in_order_and_raise_errors():
    group, a, b, out = StageGroup(), Pipe(2), Pipe(2), []
    group.produce("numbers", iter(range(50)), a)
    group.stage("square", lambda x: x * x, a, b)
    group.stage("collect", out.append, b, None)
    group.join()
    assert out == [x * x for x in range(50)]

    failing, a = StageGroup(), Pipe(1)
    failing.produce("numbers", iter(range(10**9)), a)
    failing.stage("boom", lambda x: 1 / (x - 3), a, None)
    with pytest.raises(ZeroDivisionError):
        failing.join()


def test_dropping_pipe_keeps_the_newest():
    pipe, stop = Pipe(1, drop_oldest=True), threading.Event()
    for i in range(5):
        assert pipe.put(i, stop)
    pipe.close(stop)
    assert pipe.dropped == 5  # four stale frames, then the last one makes room for END
    assert pipe.get(stop) is END
    pipe = Pipe(2, drop_oldest=True)
    for i in range(5):
        pipe.put(i, stop)
    assert [pipe.get(stop), pipe.get(stop)] == [3, 4] and pipe.dropped == 3


@pytest.fixture(scope="module")
def path_run(path_clip, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    done = run_cli(
        "run",
        "nanodet-m",
        "--source",
        path_clip,
        "--zone",
        PATH_ZONE,
        "--threads",
        "2",
        "--out",
        out / "annotated.mp4",
        "--json",
        out / "detections.jsonl",
        "--events",
        out / "events.jsonl",
        "--stats",
        out / "stats.json",
    )
    return done, out


def test_run_writes_every_frame(path_run):
    done, out = path_run
    assert done.returncode == 0, done.stderr
    assert frame_count(out / "annotated.mp4") == WINDOW[1] - WINDOW[0]
    records = [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(WINDOW[1] - WINDOW[0]))
    tracked = [o for r in records for o in r["objects"]]
    assert tracked and all(o["label"] == "person" and isinstance(o["track_id"], int) for o in tracked)


def test_each_person_entering_the_zone_fires_one_event(path_run):
    done, out = path_run
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert len(events) == len(ENTRIES), events
    assert len({e["track_id"] for e in events}) == len(ENTRIES)
    for event, expected in zip(events, ENTRIES):
        assert event["type"] == "enter" and event["zone"] == "path" and event["class"] == "person"
        assert abs(event["frame"] - expected) <= 8, (event["frame"], expected)
        x1, y1, x2, y2 = event["box"]
        assert 300 <= (x1 + x2) / 2 <= 420 and 185 <= y2 <= 330  # the feet are in the zone
        assert {"time", "video_time", "score", "snapshot"} <= set(event)
        snapshot = cv2.imread(str(out / event["snapshot"]))
        assert snapshot is not None and snapshot.shape == (576, 768, 3)


def test_settle_frames_from_the_command_line_hold_back_events(path_clip, tmp_path):
    """The same clip as path_run, where 3 settle frames give one event per person entering:
    asking for more settle frames than the clip has gives none."""
    events = tmp_path / "events.jsonl"
    args = ("run", "nanodet-m", "--source", path_clip, "--zone", PATH_ZONE, "--threads", "2", "--events", events)
    done = run_cli(*args, "--settle-frames", "500", "--margin", "0.2")
    assert done.returncode == 0, done.stderr
    assert events.read_text() == "" and "events: 0" in done.stderr
    refused = run_cli(*args, "--settle-frames", "0")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr and "--settle-frames" in refused.stderr


def test_summary_and_stats(path_run):
    done, out = path_run
    stats = json.loads((out / "stats.json").read_text())
    assert stats["frames"] == WINDOW[1] - WINDOW[0] and stats["events"] == len(ENTRIES)
    assert stats["fps"] > 0 and 0 < stats["latency_p50_ms"] <= stats["latency_p95_ms"]
    assert set(stats["stage_ms"]) == {"inference", "tracking", "output"}
    assert stats["dropped"] == 0 and stats["corrupt"] == 0
    assert re.search(r"90 frames in .* fps\); end-to-end latency p50 [\d.]+ ms, p95 [\d.]+ ms", done.stderr)
    assert "events: 3 (enter path: 3)" in done.stderr


def test_stride_writes_every_nth_frame(short_video, tmp_path):
    done = run_cli(
        "run",
        "nanodet-m",
        "--source",
        short_video,
        "--stride",
        "3",
        "--out",
        tmp_path / "s.avi",
        "--json",
        tmp_path / "s.jsonl",
        "--threads",
        "2",
    )
    assert done.returncode == 0, done.stderr
    assert frame_count(tmp_path / "s.avi") == 4
    frames = [json.loads(line)["frame"] for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert frames == [0, 3, 6, 9]


def break_frame(mjpg_avi, index: int, target):
    """A copy of an MJPG .avi at ``target`` whose frame ``index`` is zeroed (undecodable)."""
    data = bytearray(mjpg_avi.read_bytes())
    chunks = [m.start() for m in re.finditer(rb"00dc", data)]
    frames = [o for o in chunks if int.from_bytes(data[o + 4 : o + 8], "little") > 1000]  # skip index entries
    at = frames[index]
    size = int.from_bytes(data[at + 4 : at + 8], "little")
    data[at + 8 : at + 8 + size] = bytes(size)
    target.write_bytes(bytes(data))
    return target


def test_corrupt_frame_in_the_middle_is_skipped_and_counted(short_video, tmp_path):
    broken = break_frame(short_video, 6, tmp_path / "broken.avi")
    done = run_cli(
        "run",
        "nanodet-m",
        "--source",
        broken,
        "--out",
        tmp_path / "b.mp4",
        "--stats",
        tmp_path / "b.json",
        "--threads",
        "2",
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "corrupt (skipped): 1" in done.stderr
    stats = json.loads((tmp_path / "b.json").read_text())
    assert stats["corrupt"] == 1 and stats["frames"] == 11
    assert frame_count(tmp_path / "b.mp4") == 11


def _silent_server():
    """A TCP server that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    return server


@pytest.mark.parametrize(
    "args, message",
    [
        (["--zone", "a:1,2,3,4"], "zone a needs at least 3 points"),
        (["--zone", "a:0,0,900,0,900,100"], "zone a has point (900, 0) outside the 768x576 frame"),
        (["--line", "l:0,0,1000,10"], "line l has point (1000, 10) outside the 768x576 frame"),
        (["--source", "no/such/video.avi"], "no/such/video.avi does not exist"),
        (["--source", "9"], "no camera 9 (/dev/video9 does not exist)"),
        (["--source", "/dev/video7"], "no camera /dev/video7"),
    ],
)
def test_bad_input_is_one_sentence(args, message, short_video):
    source = [] if "--source" in args else ["--source", str(short_video)]
    done = run_cli("run", "nanodet-m", *source, *args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_stream_that_never_connects_times_out():
    server = _silent_server()
    try:
        port = server.getsockname()[1]
        done = run_cli("run", "nanodet-m", "--source", f"http://127.0.0.1:{port}/live.ts", "--connect-timeout", "3")
    finally:
        server.close()
    assert done.returncode == 2, done.stderr
    assert f"stream http://127.0.0.1:{port}/live.ts did not connect within 3 s" in done.stderr
    assert "Traceback" not in done.stderr


def test_events_written_before_an_error_are_kept(path_clip, tmp_path):
    """A stream that fails after events fired: the events file keeps them."""
    from edgevision.errors import EdgevisionError
    from edgevision.pipeline.capture import VideoFileSource
    from edgevision.pipeline.run import RunConfig, RunOutputs, run_pipeline
    from edgevision.pipeline.zones import parse_zone
    from edgevision.zoo.assemble import load_predictor

    class DiesAfter(VideoFileSource):
        def read(self):
            if self.index == 60:
                raise EdgevisionError("the camera went away.")
            return super().read()

    events = tmp_path / "events.jsonl"
    config = RunConfig(zones=(parse_zone(PATH_ZONE),))
    with pytest.raises(EdgevisionError, match="camera went away"):
        run_pipeline(
            load_predictor("nanodet-m", threads=2), DiesAfter(str(path_clip)), config, RunOutputs(events=events)
        )
    kept = [json.loads(line) for line in events.read_text().splitlines()]
    assert len(kept) == 2 and all(e["frame"] < 60 for e in kept)
    assert np.all([e["type"] == "enter" for e in kept])
