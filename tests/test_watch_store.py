"""The watch event store: real SQLite files, real mp4 clips, a real ``kill -9`` mid-write."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import frame_count
from edgevision.errors import EdgevisionError
from edgevision.watch.store import DATABASE, MEDIA, EventStore

SRC = Path(__file__).resolve().parents[1] / "src"
JPEG = cv2.imencode(".jpg", np.full((48, 64, 3), 90, np.uint8))[1].tobytes()
FRAMES = [np.full((48, 64, 3), 40 * k, np.uint8) for k in range(5)]

# Adds events with a snapshot, every other one a clip, printing each id once add_event returned.
CHILD = """
import sys
import cv2, numpy as np
from edgevision.watch.store import EventStore
store = EventStore(sys.argv[1])
jpeg = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))[1].tobytes()
frames = [np.full((48, 64, 3), 40 * k, np.uint8) for k in range(5)]
i = 0
while True:
    event_id = store.add_event("cam", "enter", zone="lawn", track_id=i, label="person", score=0.5, box=[0, 0, 9, 9])
    print(event_id, flush=True)
    store.add_snapshot(event_id, jpeg)
    if i % 2 == 0:
        store.add_clip(event_id, frames, 10)
    store.count_line("cam", "path", "in")
    i += 1
"""


def media_files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in (folder / MEDIA).rglob("*") if p.is_file()}


def referenced(store: EventStore) -> set[str]:
    return {name for e in store.events(limit=1_000_000) for name in (e.snapshot, e.clip) if name}


def test_events_round_trip_with_filters(tmp_path):
    with EventStore(tmp_path) as store:
        a = store.add_event(
            "garden", "enter", time=100.0, zone="lawn", track_id=7, label="person", score=0.75, box=(1, 2, 3, 4)
        )
        b = store.add_event("garden", "cross", time=200.0, zone="path", track_id=8)
        c = store.add_event("door", "enter", time=300.0)
        assert (a, b, c) == (1, 2, 3)
        stored = store.event(a)
        assert (stored.camera, stored.type, stored.zone, stored.track_id, stored.label) == (
            "garden",
            "enter",
            "lawn",
            7,
            "person",
        )
        assert (stored.score, stored.box, stored.snapshot, stored.clip) == (0.75, (1.0, 2.0, 3.0, 4.0), None, None)
        assert [e.id for e in store.events()] == [c, b, a]
        assert [e.id for e in store.events(camera="garden")] == [b, a]
        assert [e.id for e in store.events(since=150.0)] == [c, b]
        assert [e.id for e in store.events(type="enter", limit=1)] == [c]
        assert store.events(camera="nobody") == []
        assert store.event(99) is None


def test_snapshot_and_clip_are_complete_files_the_event_refers_to(tmp_path):
    with EventStore(tmp_path) as store:
        event_id = store.add_event("garden", "dwell")
        snapshot = store.add_snapshot(event_id, JPEG)
        clip = store.add_clip(event_id, FRAMES, fps=10)
        stored = store.event(event_id)
        assert tmp_path / stored.snapshot == snapshot and tmp_path / stored.clip == clip
        assert cv2.imdecode(np.frombuffer(snapshot.read_bytes(), np.uint8), cv2.IMREAD_COLOR).shape == (48, 64, 3)
        assert frame_count(clip) == len(FRAMES)
        assert store.media_bytes() == snapshot.stat().st_size + clip.stat().st_size
        assert media_files(tmp_path) == {stored.snapshot, stored.clip}  # no temporary file left beside them


def test_tracks_and_line_counts(tmp_path):
    with EventStore(tmp_path) as store:
        store.see_tracks("garden", [(1, "person"), (2, "dog")], time=10.0)
        store.see_tracks("garden", [(1, "person")], time=12.5)
        assert store.tracks("garden") == [(1, "person", 10.0, 12.5), (2, "dog", 10.0, 10.0)]
        assert [store.count_line("garden", "path", "in") for _ in range(3)] == [1, 2, 3]
        assert store.count_line("door", "gate", "out", 4) == 4
        assert store.line_counts("garden") == {("garden", "path", "in"): 3}
        assert len(store.line_counts()) == 2
    with EventStore(tmp_path) as again:  # kept across a restart
        assert again.line_counts("door") == {("door", "gate", "out"): 4}
        assert again.last_track_id("garden") == 2 and again.last_track_id("door") == 0
        again.add_event("door", "enter", track_id=9)
        assert again.last_track_id("door") == 9  # an event's track counts too


def test_crossing_direction_and_dwell_are_kept(tmp_path):
    with EventStore(tmp_path) as store:
        crossed = store.add_event("garden", "cross", zone="path", direction="out")
        dwelled = store.add_event("garden", "dwell", zone="lawn", dwell_seconds=5.5)
        assert (store.event(crossed).direction, store.event(crossed).dwell_seconds) == ("out", None)
        assert (store.event(dwelled).direction, store.event(dwelled).dwell_seconds) == (None, 5.5)


def test_a_database_of_an_older_schema_gains_the_new_columns(tmp_path):
    old = sqlite3.connect(tmp_path / "events.db")
    old.execute(
        "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, camera TEXT NOT NULL, type TEXT NOT NULL, "
        "time REAL NOT NULL, zone TEXT, track_id INTEGER, label TEXT, score REAL, box TEXT, snapshot TEXT, "
        "clip TEXT, bytes INTEGER NOT NULL DEFAULT 0)"
    )
    old.execute("INSERT INTO events (camera, type, time) VALUES ('garden', 'cross', 5.0)")
    old.commit()
    old.close()
    with EventStore(tmp_path) as store:
        (kept,) = store.events()
        assert (kept.camera, kept.type, kept.direction) == ("garden", "cross", None)
        assert store.event(store.add_event("garden", "cross", direction="in")).direction == "in"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s, i: s.add_snapshot(i, b"\x89PNG not a jpeg"), "is not JPEG data"),
        (lambda s, i: s.add_snapshot(999, JPEG), "there is no event 999"),
        (lambda s, i: s.add_clip(i, [], fps=10), "at least one frame"),
        (lambda s, i: s.add_clip(i, FRAMES, fps=0), "fps must be above 0"),
        (lambda s, i: s.add_clip(i, [FRAMES[0], np.zeros((10, 10, 3), np.uint8)], fps=10), "must be 64x48"),
        (lambda s, i: s.add_event("../etc", "enter"), "camera name '../etc'"),
    ],
)
def test_refusals_leave_no_file_and_no_reference(tmp_path, call, message):
    with EventStore(tmp_path) as store:
        event_id = store.add_event("garden", "enter")
        with pytest.raises(EdgevisionError, match=message.replace("(", r"\(")):
            call(store, event_id)
        assert media_files(tmp_path) == set()
        assert (store.event(event_id).snapshot, store.event(event_id).clip) == (None, None)


def test_a_file_that_is_not_a_database_is_one_sentence(tmp_path):
    (tmp_path / DATABASE).write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(EdgevisionError, match="cannot open the event database .*move it away"):
        EventStore(tmp_path)


def test_open_removes_unreferenced_files_and_forgets_missing_ones(tmp_path):
    with EventStore(tmp_path) as store:
        kept, lost = store.add_event("garden", "enter"), store.add_event("garden", "cross")
        kept_path = store.add_snapshot(kept, JPEG)
        store.add_snapshot(lost, JPEG).unlink()  # gone behind the store's back
        store.add_clip(lost, FRAMES, fps=10)
    orphan = tmp_path / MEDIA / "garden" / "00000777.jpg"  # renamed, then a crash before the commit
    orphan.write_bytes(JPEG)
    half = tmp_path / MEDIA / "garden" / ".00000003.mp4-abc"  # a temporary folder of a write cut short
    half.mkdir()
    (half / "00000003.mp4").write_bytes(b"half")
    with EventStore(tmp_path) as store:
        assert store.event(lost).snapshot is None and store.event(lost).clip is not None
        assert store.event(kept).snapshot is not None
        assert media_files(tmp_path) == referenced(store)
        assert not half.exists() and not orphan.exists() and kept_path.exists()
        assert store.media_bytes() == sum((tmp_path / f).stat().st_size for f in referenced(store))


def test_retain_by_age_then_by_size_oldest_first(tmp_path):
    now = 1_000_000.0
    with EventStore(tmp_path) as store:
        ids = [store.add_event("garden", "enter", time=now - age * 86400) for age in (10, 3, 2, 1, 0)]
        for event_id in ids:
            store.add_snapshot(event_id, JPEG)
        assert store.retain(7, max_bytes=10**9, now=now) == 1  # the 10-day-old one
        assert store.retain(7, max_bytes=2 * len(JPEG), now=now) == 2  # the two oldest left
        assert [e.id for e in store.events()] == ids[:2:-1]
        assert media_files(tmp_path) == referenced(store)
        assert store.retain(7, max_bytes=0, now=now) == 2 and store.events() == [] and media_files(tmp_path) == set()


def test_events_that_share_a_clip_keep_it_until_the_last_of_them_goes(tmp_path):
    now = 1_000_000.0
    with EventStore(tmp_path) as store:
        a, b, c = (store.add_event("garden", "enter", time=now - age) for age in (30, 20, 10))
        for event_id in (a, b, c):
            store.add_snapshot(event_id, JPEG)
        clip = store.add_clip([a, b, c], FRAMES, fps=10, offsets=[1.9, 2.9, 3.9])
        assert clip.name == f"{a:08d}.mp4" and frame_count(clip) == len(FRAMES)  # one file, named by the first
        stored = [store.event(i) for i in (a, b, c)]
        assert {e.clip for e in stored} == {clip.relative_to(tmp_path).as_posix()}
        assert [e.clip_offset for e in stored] == [1.9, 2.9, 3.9]
        on_disk = 3 * len(JPEG) + clip.stat().st_size
        assert store.media_bytes() == on_disk  # the clip is counted once
        # by size, oldest first: the first two go with their snapshots only, the clip stays for the third
        assert store.retain(7, max_bytes=on_disk - len(JPEG), now=now) == 1
        assert clip.exists() and store.media_bytes() == on_disk - len(JPEG)
        assert store.retain(7, max_bytes=on_disk - 2 * len(JPEG), now=now) == 1
        assert clip.exists() and store.event(c).clip is not None
        assert store.retain(7, max_bytes=clip.stat().st_size, now=now) == 1  # the last one: its clip goes too
        assert media_files(tmp_path) == set() and store.media_bytes() == 0
    with EventStore(tmp_path) as store:
        a, b = store.add_event("garden", "enter"), store.add_event("garden", "enter")
        clip = store.add_clip([a, b], FRAMES, fps=10)
    with EventStore(tmp_path) as store:  # reopening keeps a shared clip, and forgets it for all once gone
        assert clip.exists() and store.event(a).clip == store.event(b).clip
        assert store.event(a).clip_offset is None
        assert store.media_bytes() == clip.stat().st_size
    clip.unlink()
    with EventStore(tmp_path) as store:
        assert (store.event(a).clip, store.event(b).clip, store.media_bytes()) == (None, None, 0)
    with EventStore(tmp_path) as store, pytest.raises(EdgevisionError, match="2 offsets for the clip of 1 events"):
        store.add_clip([a], FRAMES, fps=10, offsets=[0.0, 1.0])
    with EventStore(tmp_path) as store:  # retention took the first events while their clip was encoded
        first, second, third = (store.add_event("garden", "enter", time=1.0 + k) for k in range(3))
        store.retain(7, max_bytes=10**9, now=1.0 + 7 * 86400 + 1.5)  # the first two are older than 7 days
        clip = store.add_clip([first, second, third], FRAMES, fps=10, offsets=[0.5, 1.5, 2.5])
        assert clip.name == f"{third:08d}.mp4" and store.event(third).clip_offset == 2.5
        assert store.media_bytes() == clip.stat().st_size


def kill_mid_write(folder: Path, *, after: int, delay: float) -> list[int]:
    """Run the writer until it printed ``after`` ids, wait ``delay`` s (so the kill lands inside a
    snapshot, clip or commit), kill -9 it; every id it printed."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(folder)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    printed = [int(child.stdout.readline()) for _ in range(after)]
    time.sleep(delay)
    os.kill(child.pid, signal.SIGKILL)
    printed += [int(line) for line in child.stdout.read().split()]
    assert child.wait(timeout=30) == -signal.SIGKILL
    return printed


def test_kill_9_keeps_every_committed_event_and_no_broken_clip(tmp_path):
    printed: list[int] = []
    for after, delay in [(3, 0.0), (5, 0.001), (4, 0.003), (6, 0.006), (4, 0.012)]:  # one store, five crashes
        printed += kill_mid_write(tmp_path, after=after, delay=delay)
        with sqlite3.connect(tmp_path / DATABASE) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        with EventStore(tmp_path) as store:
            stored = store.events(limit=10_000)
            assert set(printed) <= {e.id for e in stored}
            assert media_files(tmp_path) == referenced(store)  # temporary files and orphans removed
            clips = [tmp_path / e.clip for e in stored if e.clip]
            assert clips and all(frame_count(clip) == len(FRAMES) for clip in clips)
            snapshots = [tmp_path / e.snapshot for e in stored if e.snapshot]
            assert all(cv2.imread(str(s)) is not None for s in snapshots)
            assert store.line_counts("cam")[("cam", "path", "in")] >= len(printed) - 5


events_strategy = st.lists(
    # age in days, snapshot padding, clip, and whether a clip shares the next events' (up to 3)
    st.tuples(st.floats(0, 10), st.integers(0, 3000), st.booleans(), st.integers(1, 3)),
    max_size=12,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=events_strategy, days=st.floats(0.5, 9), max_bytes=st.integers(0, 40_000))
def test_retention_never_leaves_orphans_or_dangling_references(events, days, max_bytes):
    now, added = 2_000_000.0, {}
    with tempfile.TemporaryDirectory() as folder, EventStore(folder) as store:
        ids = []
        for age, padding, *_ in events:
            event_id = store.add_event("cam", "enter", time=now - age * 86400)
            added[event_id] = now - age * 86400
            store.add_snapshot(event_id, JPEG + b"\0" * padding)
            ids.append(event_id)
        for index, (_, padding, with_clip, shared) in enumerate(events):
            if with_clip and padding % 4 == 0:  # clips are slow to write: about one event in eight
                store.add_clip(ids[index : index + shared], FRAMES[:2], fps=5)  # shared by events of any age
        store.retain(days, max_bytes, now=now)
        kept = store.events(limit=1000)
        assert media_files(Path(folder)) == referenced(store)
        assert store.media_bytes() == sum((Path(folder) / f).stat().st_size for f in referenced(store))
        assert store.media_bytes() <= max_bytes
        cutoff = now - days * 86400
        assert all(e.time >= cutoff for e in kept)
        kept_ids = {e.id for e in kept}
        dropped_young = [(t, i) for i, t in added.items() if t >= cutoff and i not in kept_ids]
        if dropped_young and kept:  # size made room by dropping the oldest first
            assert max(dropped_young) < min((e.time, e.id) for e in kept)
