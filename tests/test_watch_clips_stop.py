"""Clips still to be encoded when the service stops are written in the fast codec, not dropped."""

from __future__ import annotations

import logging
import shutil
import threading
import time

import cv2
import numpy as np
import pytest

from edgevision.watch import clips, video
from edgevision.watch.clips import BACKLOG, ClipWriter, FinishedClip

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the H.264 path needs the ffmpeg program")


def _frames(first_frame, count: int) -> list[np.ndarray]:
    return [np.roll(first_frame, 8 * k, axis=1) for k in range(count)]


def _clip(event_id: int) -> FinishedClip:
    return FinishedClip((event_id,), (0.0,), [np.zeros((4, 4, 3), np.uint8)], 10.0)


def _codec_and_count(path) -> tuple[str, int]:
    cap = cv2.VideoCapture(str(path))
    code = int(cap.get(cv2.CAP_PROP_FOURCC))
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    name = "".join(chr((code >> 8 * i) & 0xFF) for i in range(4)).lower()
    return {"avc1": "h264", "h264": "h264", "fmp4": "mp4v", "mp4v": "mp4v"}.get(name, name), count


@pytest.fixture
def fresh_encoders(monkeypatch):
    monkeypatch.setattr(video, "_failed", set())
    monkeypatch.setattr(video, "_worked", set())


def test_a_set_hurry_writes_mp4v_at_once(tmp_path, first_frame, fresh_encoders):
    hurry = threading.Event()
    hurry.set()
    assert video.write_mp4(tmp_path / "a.mp4", _frames(first_frame, 12), 10.0, hurry=hurry) == "mp4v"
    assert _codec_and_count(tmp_path / "a.mp4") == ("mp4v", 12)


@needs_ffmpeg
def test_hurry_during_an_h264_encoding_stops_ffmpeg_and_keeps_every_frame_as_mp4v(
    tmp_path, first_frame, fresh_encoders
):
    frames = _frames(first_frame, 300)  # 300 frames of 768x576 keep x264 busy for seconds
    hurry = threading.Event()
    threading.Timer(0.3, hurry.set).start()
    start = time.perf_counter()
    codec = video.write_mp4(tmp_path / "a.mp4", frames, 10.0, hurry=hurry)
    took = time.perf_counter() - start
    assert codec == "mp4v"
    assert _codec_and_count(tmp_path / "a.mp4") == ("mp4v", 300)
    assert "ffmpeg" not in video._failed  # stopping is not a failure: H.264 stays the first choice
    # and it was quicker than the H.264 encoding it replaced
    calm = threading.Event()
    start = time.perf_counter()
    assert video.write_mp4(tmp_path / "b.mp4", frames, 10.0, hurry=calm) == "h264"
    assert took < time.perf_counter() - start


def test_closing_the_writer_keeps_every_queued_clip_when_encoding_is_slow(tmp_path, monkeypatch):
    monkeypatch.setattr(clips, "BACKLOG", 1000)  # 30 clips queued at once: here only the stop hurries them
    from edgevision.checks import usable_cores

    written: dict[int, str] = {}
    writers: set[str] = set()

    def write(clip, *, hurry):
        (event_id,) = clip.event_ids
        # an encoder that takes 0.1 s a clip unless hurried (then 0.05 s), like H.264 against mp4v
        if not hurry.wait(0.1):
            written[event_id] = "h264"
        else:
            time.sleep(0.05)
            written[event_id] = "mp4v"
            writers.add(threading.current_thread().name)

    writer = ClipWriter(write)
    for event_id in range(30):
        writer.put(_clip(event_id))
    start = time.perf_counter()
    writer.close(timeout=1.0)
    assert time.perf_counter() - start < 1.2
    assert sorted(written) == list(range(30))  # none dropped: 30 clips of 0.1 s in 1 s
    assert written[0] == "h264" and written[29] == "mp4v"  # the first as usual, the rest hurried
    assert len(writers) == 1 + usable_cores()  # the hurried ones on the writer and one helper per core


def test_a_backlog_takes_the_fast_codec_until_the_writer_catches_up(caplog):
    caplog.set_level(logging.INFO, logger="edgevision.watch.clips")
    codecs: dict[int, str] = {}
    started = threading.Event()

    def write(clip, *, hurry):
        (event_id,) = clip.event_ids
        started.set()
        time.sleep(0.02)
        codecs[event_id] = "mp4v" if hurry.is_set() else "h264"

    writer = ClipWriter(write)
    writer.put(_clip(0))
    started.wait(2)
    for event_id in range(1, 3 * BACKLOG):  # events faster than the writer: a backlog builds
        writer.put(_clip(event_id))
    deadline = time.monotonic() + 10
    while len(codecs) < 3 * BACKLOG and time.monotonic() < deadline:
        time.sleep(0.01)
    later = 3 * BACKLOG
    writer.put(_clip(later))  # after catching up: H.264 again
    writer.close(timeout=5.0)

    assert sorted(codecs) == list(range(3 * BACKLOG + 1))  # none dropped
    assert codecs[0] == "h264" and codecs[1] == "mp4v"  # the backlog was there when clip 1 was taken
    fast = [i for i in range(1, 3 * BACKLOG) if codecs[i] == "mp4v"]
    # from the backlog on, until the clip taken left only BACKLOG // 2 waiting behind it
    assert fast == list(range(1, 3 * BACKLOG - 1 - BACKLOG // 2))
    assert codecs[later] == "h264"
    assert "faster than H.264 is encoded" in caplog.text and "caught up" in caplog.text
    assert writer.fell_behind == 1
