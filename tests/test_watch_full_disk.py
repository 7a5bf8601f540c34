"""A full disk under ``edgevision watch``: a real tmpfs of a few MB, filled by the store or by other files.

Mounting needs root (CI runs as root); elsewhere these tests skip.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import write_first_frames
from edgevision.files import disk_free
from edgevision.watch import video
from edgevision.watch.config import watch_config_from_dict
from edgevision.watch.service import Service
from edgevision.watch.store import DATABASE, MEDIA, EventStore, StorageError

WALKWAY = [[0.0, 0.3], [1.0, 0.3], [1.0, 1.0], [0.0, 1.0]]


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs at tmp_path/disk, unmounted after the test."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root: the full-disk tests run as root (as CI does)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def noise_jpeg(seed: int) -> bytes:
    """A JPEG of noise, about 60 KB: it does not compress."""
    image = np.random.default_rng(seed).integers(0, 256, (160, 160, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


def media_files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in (folder / MEDIA).rglob("*") if p.is_file()}


def referenced(store: EventStore) -> set[str]:
    return {name for e in store.events(limit=100_000) for name in (e.snapshot, e.clip) if name}


def fill_until_refused(store: EventStore) -> tuple[list[int], StorageError]:
    """Events with snapshots until the store refuses one: the ids stored, and the refusal."""
    ids = []
    for seed in range(1000):
        try:
            event_id = store.add_event("cam", "enter", time=1000.0 + seed)
            ids.append(event_id)
            store.add_snapshot(event_id, noise_jpeg(seed))
        except StorageError as refused:
            return ids, refused
    raise AssertionError("a 2 MB disk took 1000 snapshots of 60 KB")


def test_a_full_disk_is_one_sentence_and_freeing_space_lets_the_store_write_again(small_disk):
    data = small_disk / "data"
    with EventStore(data) as store:
        ids, refused = fill_until_refused(store)
        assert refused.full and "is full" in str(refused) and str(data) in str(refused)
        assert "\n" not in str(refused) and len(ids) >= 10
        assert media_files(data) == referenced(store)  # no half-written snapshot left, none referenced missing

        removed, enough = store.free_space(500_000)
        assert removed >= 1 and enough and disk_free(data) >= 500_000
        kept = [e.id for e in store.events(limit=1000)]
        assert sorted(kept) == ids[removed:]  # the oldest went
        assert media_files(data) == referenced(store)
        assert store.media_bytes() == sum((data / f).stat().st_size for f in referenced(store))
        again = store.add_event("cam", "enter")
        store.add_snapshot(again, noise_jpeg(5000))  # room again
        assert store.event(again).snapshot is not None
    with sqlite3.connect(data / DATABASE) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_disk_full_of_other_files_deletes_no_event(small_disk):
    data = small_disk / "data"
    with EventStore(data) as store:
        first = store.add_event("cam", "enter")
        store.add_snapshot(first, noise_jpeg(1))
        filler = small_disk / "other.bin"
        with open(filler, "wb") as out:  # another program fills the disk
            try:
                while True:
                    out.write(b"\0" * 65536)
                    out.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        with pytest.raises(StorageError, match="is full"):
            store.add_snapshot(store.add_event("cam", "enter"), noise_jpeg(2))
        assert store.free_space(500_000) == (0, False)  # deleting every event would not make the room
        assert store.event(first).snapshot is not None
        filler.unlink()
        assert store.free_space(500_000) == (0, True)


def test_a_clip_on_a_full_disk_is_enospc_and_the_encoder_is_not_blamed(small_disk, first_frame, monkeypatch):
    monkeypatch.setattr(video, "_failed", set())
    monkeypatch.setattr(video, "_worked", set())
    frames = [np.roll(first_frame, 8 * k, axis=1) for k in range(30)]
    (small_disk / "other.bin").write_bytes(b"\0" * 1_500_000)
    with pytest.raises(OSError) as raised:
        video.write_mp4(small_disk / "a.mp4", frames, 10.0)
    assert raised.value.errno == errno.ENOSPC
    assert video._failed == set()  # H.264 stays the first choice once there is room
    (small_disk / "other.bin").unlink()
    codec = video.write_mp4(small_disk / "a.mp4", frames, 10.0)
    assert codec in ("h264", "mp4v") and (codec == "mp4v") == (video._failed == {"ffmpeg", "opencv-h264"})


def test_the_service_goes_on_when_its_disk_fills_and_stores_again_once_retention_makes_room(
    small_disk, samples_cache, predictor, caplog
):
    caplog.set_level(logging.INFO, logger="edgevision.watch")
    crashed = []
    monkeyed = threading.excepthook
    threading.excepthook = lambda args: crashed.append(args)
    clip = write_first_frames(samples_cache["vtest.avi"], small_disk.parent / "walkway.avi", 100)
    camera = {"source": str(clip), "loop": True, "zones": {"walkway": WALKWAY}, "motion": {"enabled": False}}
    storage = {"path": str(small_disk / "data"), "min_free_gb": 0.0004}  # 400 KB
    config = watch_config_from_dict({"storage": storage, "cameras": {"door": camera}}, base=small_disk.parent)
    service = Service(config, loader=lambda model: predictor)
    try:
        service.start()
        deadline = time.monotonic() + 90
        while "is full" not in caplog.text and time.monotonic() < deadline:  # the disk fills
            time.sleep(0.2)
        assert "is full" in caplog.text
        inferred = service.cameras["door"].inferred
        while "oldest event(s)" not in caplog.text and time.monotonic() < deadline:  # retention makes room
            time.sleep(0.2)
        assert "oldest event(s)" in caplog.text
        stored_again = caplog.text.count("events are stored again")
        while caplog.text.count("events are stored again") == stored_again and time.monotonic() < deadline:
            time.sleep(0.2)
        assert caplog.text.count("events are stored again") > stored_again
        assert service.cameras["door"].inferred > inferred + 10  # the model never stopped
        status = service.status()
        assert status["storage_free_bytes"] >= 0 and status["events_not_stored"] >= 0
    finally:
        service.stop()
        threading.excepthook = monkeyed
    assert crashed == []  # no thread died
    assert "Traceback" not in caplog.text and "not processed" not in caplog.text  # every frame went through
    with EventStore(small_disk / "data") as store:
        assert store.events() and media_files(small_disk / "data") == referenced(store)


def test_crossings_the_store_refuses_count_live_and_reach_the_store_once_it_takes_writes(tmp_path, clip, predictor):
    line = {"points": [[0.5, 0.0], [0.5, 1.0]]}  # people walk across it
    camera = {"source": str(clip), "loop": True, "lines": {"middle": line}, "motion": {"enabled": False}}
    config = watch_config_from_dict(
        {"storage": {"path": str(tmp_path / "data")}, "cameras": {"door": camera}}, base=tmp_path
    )
    service = Service(config, loader=lambda model: predictor, paced=False)

    def live() -> int:
        return sum(service.cameras_status()[0]["line_counts"]["middle"].values())

    def stored() -> int:
        return sum(service.store.line_counts("door").values())

    service.start()
    try:
        deadline = time.monotonic() + 60
        while stored() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        service.store._db.execute("PRAGMA query_only = ON")  # the store refuses every write from now on
        while service.events_not_stored < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert service.storage_problem is not None and service.events_not_stored >= 3
        assert live() > stored()  # refused crossings still count on the page and over MQTT
        service.store._db.execute("PRAGMA query_only = OFF")
        before = service.events_not_stored
        while (service.storage_problem is not None or live() != stored()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert service.storage_problem is None and live() == stored()  # the refused ones were added
        assert service.events_not_stored >= before
    finally:
        service.stop()
