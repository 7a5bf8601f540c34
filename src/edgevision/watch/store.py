"""The event store of ``edgevision watch``: events, tracks and line counts in SQLite, snapshots and clips beside it.

An event whose ``add_event`` returned survives a crash (even ``kill -9``) and a power cut.
A snapshot or clip is written to a temporary file, synced and renamed before the event
refers to it, so a referenced file is always complete; opening the store removes files no
event refers to (left by a crash between the rename and the commit) and forgets files that
are gone.

A write the disk refuses (full, read-only, failing) raises ``StorageError``, one sentence,
never SQLite's own error; ``free_space`` deletes the oldest events until the disk has room
again (``storage.min_free_gb`` of the watch config).

>>> store = EventStore("watch-data")                                              # doctest: +SKIP
>>> event_id = store.add_event("garden", "enter", zone="lawn", track_id=7, label="person")  # doctest: +SKIP
>>> store.add_snapshot(event_id, jpeg_bytes)                                      # doctest: +SKIP
>>> [e.type for e in store.events(camera="garden")]                               # doctest: +SKIP
['enter']
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgevision.errors import EdgevisionError, cause
from edgevision.files import atomic_path, disk_free, writable_folder, write_atomic
from edgevision.watch.config import SAFE_NAME
from edgevision.watch.video import write_mp4

logger = logging.getLogger(__name__)

DATABASE = "events.db"
MEDIA = "media"  # snapshots and clips, one folder per camera
_JPEG = b"\xff\xd8\xff"
_DAY = 86400.0
_UNSENT = "SELECT count(*) FROM outbox WHERE sent = 0"
_FULL_DISK = (errno.ENOSPC, errno.EDQUOT)
SENT_KEPT = 1000  # sent outbox messages kept, newest first, for a look back; older ones are deleted

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so a file named by id is never taken for another event's
    camera TEXT NOT NULL,
    type TEXT NOT NULL,
    time REAL NOT NULL,                    -- seconds since the epoch
    zone TEXT,                             -- the zone or line
    track_id INTEGER,
    label TEXT,
    score REAL,
    box TEXT,                              -- JSON [x1, y1, x2, y2] in frame pixels
    snapshot TEXT,                         -- relative to the storage folder
    clip TEXT,
    bytes INTEGER NOT NULL DEFAULT 0,      -- of its snapshot and clip, for retention by size (see _share_bytes)
    direction TEXT,                        -- "in" or "out", of a line crossing
    dwell_seconds REAL,                    -- of a dwell event
    clip_offset REAL                       -- seconds from the start of its clip to the event
);
CREATE INDEX IF NOT EXISTS events_by_time ON events (time);
CREATE INDEX IF NOT EXISTS events_by_camera ON events (camera, time);
CREATE TABLE IF NOT EXISTS tracks (
    camera TEXT NOT NULL,
    track_id INTEGER NOT NULL,
    label TEXT,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    PRIMARY KEY (camera, track_id)
);
CREATE TABLE IF NOT EXISTS outbox (       -- MQTT copies of events, written with them, sent in id order
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id INTEGER NOT NULL,
    time REAL NOT NULL,                    -- the event's, for retention
    topic TEXT NOT NULL,
    payload TEXT NOT NULL,
    sent INTEGER NOT NULL DEFAULT 0        -- 1 once the broker acknowledged it
);
CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (sent, id);
CREATE TABLE IF NOT EXISTS line_counts (
    camera TEXT NOT NULL,
    line TEXT NOT NULL,
    direction TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (camera, line, direction)
);
"""


class StorageError(EdgevisionError):
    """The store could not write to its folder; ``full`` when the disk (or quota) has no room left."""

    def __init__(self, message: str, *, full: bool) -> None:
        super().__init__(message)
        self.full = full


@dataclass(frozen=True)
class StoredEvent:
    """One event as stored; ``snapshot`` and ``clip`` are paths relative to the storage folder."""

    id: int
    camera: str
    type: str
    time: float
    zone: str | None
    track_id: int | None
    label: str | None
    score: float | None
    box: tuple[float, ...] | None
    snapshot: str | None
    clip: str | None
    direction: str | None = None
    dwell_seconds: float | None = None
    clip_offset: float | None = None

    @classmethod
    def of(cls, row: sqlite3.Row) -> StoredEvent:
        fields = dict(zip(row.keys(), tuple(row)))  # a Row iterates over its values, not its keys
        box, _ = fields.pop("box"), fields.pop("bytes")
        return cls(**fields, box=tuple(json.loads(box)) if box else None)


Message = tuple[str, str]  # an MQTT topic and its payload
OutboxMessage = Callable[[StoredEvent], Message]  # the message that goes out with an event


@dataclass(frozen=True)
class Outgoing:
    """A message of the outbox, not yet acknowledged by the broker."""

    id: int
    event_id: int
    topic: str
    payload: str


class EventStore:
    """Events, tracks and line counts of every camera, kept in ``folder`` (created when missing).

    Safe to share between threads: one connection behind a lock (events come at most a
    few per second; SQLite serialises writes anyway).
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        with writable_folder(self.folder):
            (self.folder / MEDIA).mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = _connect(self.folder / DATABASE)
        self.recover()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """The lock and one transaction; a write the disk refuses becomes a ``StorageError``."""
        with self._lock:
            try:
                with self._db:
                    yield
            except sqlite3.OperationalError as exc:  # SQLITE_FULL, SQLITE_IOERR, SQLITE_READONLY ...
                text = cause(exc)
                raise self._refused(text, full="full" in text) from None

    def _refused(self, text: str, *, full: bool) -> StorageError:
        if full:
            free = disk_free(self.folder) / 1e6
            return StorageError(
                f"the disk of {self.folder} is full ({free:.1f} MB free; {text}): events are not stored "
                "until there is room again",
                full=True,
            )
        return StorageError(f"{self.folder} cannot be written ({text}): events are not stored", full=False)

    @contextlib.contextmanager
    def _writing_file(self) -> Iterator[None]:
        """A snapshot or clip written to the media folder; an error the disk gives becomes a ``StorageError``."""
        try:
            yield
        except OSError as exc:
            raise self._refused(exc.strerror or cause(exc), full=exc.errno in _FULL_DISK) from None

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ events

    def add_event(
        self,
        camera: str,
        type: str,
        *,
        time: float | None = None,
        zone: str | None = None,
        track_id: int | None = None,
        label: str | None = None,
        score: float | None = None,
        box: Sequence[float] | None = None,
        direction: str | None = None,
        dwell_seconds: float | None = None,
        outbox: OutboxMessage | None = None,
    ) -> int:
        """Store one event (committed, on disk when this returns); its id.

        ``outbox`` makes the event's MQTT message, which is kept in the outbox in the same
        transaction: a crash can lose neither without the other.
        """
        if not SAFE_NAME.fullmatch(camera):
            raise EdgevisionError(f"camera name '{camera}' must hold only letters, digits, '_' or '-'.")
        when = _now() if time is None else time
        values = (camera, type, when, zone, track_id, label, score, _box_json(box), direction, dwell_seconds)
        sql = (
            "INSERT INTO events (camera, type, time, zone, track_id, label, score, box, direction, dwell_seconds) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        with self._writing():
            event_id = self._db.execute(sql, values).lastrowid
            if outbox is not None:
                stored = self._db.execute("SELECT * FROM events WHERE id = ?", (event_id,)).fetchone()
                topic, payload = outbox(StoredEvent.of(stored))
                self._db.execute(
                    "INSERT INTO outbox (event_id, time, topic, payload) VALUES (?, ?, ?, ?)",
                    (event_id, when, topic, payload),
                )
        return event_id

    def event(self, event_id: int) -> StoredEvent | None:
        """The event ``event_id``, or None when there is none (never stored, or deleted by retention)."""
        with self._lock:
            row = self._db.execute("SELECT * FROM events WHERE id = ?", (event_id,)).fetchone()
        return StoredEvent.of(row) if row else None

    def events(
        self, *, camera: str | None = None, since: float | None = None, type: str | None = None, limit: int = 100
    ) -> list[StoredEvent]:
        """The newest ``limit`` events (newest first), of one camera, type, or from time ``since`` on."""
        filters = {"camera = ?": camera, "time >= ?": since, "type = ?": type}
        chosen = {sql: value for sql, value in filters.items() if value is not None}
        where = f"WHERE {' AND '.join(chosen)}" if chosen else ""
        sql = f"SELECT * FROM events {where} ORDER BY time DESC, id DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (*chosen.values(), limit)).fetchall()
        return [StoredEvent.of(row) for row in rows]

    def counts(
        self, *, bucket: float, since: float, until: float, camera: str | None = None, type: str | None = None
    ) -> list[tuple[str, str | None, str, str | None, float, int]]:
        """Events counted per ``bucket`` seconds from ``since`` to ``until``, by camera, zone, type and direction.

        Rows ``(camera, zone, type, direction, bucket_start, count)``, oldest bucket first; a bucket
        starts at a multiple of ``bucket`` seconds since the epoch (for an hour, on the hour).
        """
        sql = (
            "SELECT camera, zone, type, direction, CAST(time / ? AS INTEGER) * ? AS start, count(*) FROM events "
            "WHERE time >= ? AND time < ? AND (? IS NULL OR camera = ?) AND (? IS NULL OR type = ?) "
            "GROUP BY camera, zone, type, direction, start ORDER BY start, camera, zone, type, direction"
        )
        with self._lock:
            rows = self._db.execute(sql, (bucket, bucket, since, until, camera, camera, type, type)).fetchall()
        return [tuple(row) for row in rows]

    # ------------------------------------------------------------------ snapshots and clips

    def add_snapshot(self, event_id: int, jpeg: bytes) -> Path:
        """Keep ``jpeg`` (JPEG bytes) as event ``event_id``'s snapshot; its path."""
        if not bytes(jpeg[:3]) == _JPEG:
            raise EdgevisionError(f"the snapshot of event {event_id} is not JPEG data; encode it with cv2.imencode.")
        relative = self._media_name(event_id, ".jpg")
        with self._writing_file():
            write_atomic(self.folder / relative, bytes(jpeg))
        self._refer(event_id, "snapshot", relative)
        return self.folder / relative

    def add_clip(
        self,
        event_ids: int | Sequence[int],
        frames: Sequence[np.ndarray],
        fps: float,
        *,
        offsets: Sequence[float] | None = None,
        hurry: threading.Event | None = None,
    ) -> Path:
        """Keep ``frames`` (BGR, all one size) as the mp4 clip of one event or of several; its path.

        Several events share one file, named after the first still stored (retention may have
        deleted some meanwhile); ``offsets`` says where in it each one happened (seconds). Once
        ``hurry`` is set the clip is written in the fast codec (see ``write_mp4``)."""
        ids = [event_ids] if isinstance(event_ids, int) else list(event_ids)
        if not ids:
            raise EdgevisionError("a clip needs at least one event.")
        if offsets is not None and len(offsets) != len(ids):
            raise EdgevisionError(f"{len(offsets)} offsets for the clip of {len(ids)} events; give one per event.")
        shown = [k for k, event_id in enumerate(ids) if self.event(event_id) is not None]  # retention may take some
        relative = self._media_name(ids[shown[0] if shown else 0], ".mp4")
        ids = [ids[k] for k in shown]
        offsets = None if offsets is None else [offsets[k] for k in shown]
        with self._writing_file(), atomic_path(self.folder / relative) as tmp:
            write_mp4(tmp, frames, fps, hurry=hurry)
        self._refer_clip(ids, relative, offsets)
        return self.folder / relative

    def _media_name(self, event_id: int, suffix: str) -> str:
        stored = self.event(event_id)
        if stored is None:
            raise EdgevisionError(f"there is no event {event_id} (never stored, or removed by retention).")
        return f"{MEDIA}/{stored.camera}/{event_id:08d}{suffix}"

    def _refer_clip(self, event_ids: list[int], relative: str, offsets: Sequence[float] | None) -> None:
        """Point the events at their clip, which is complete and renamed by now; share out its bytes."""
        placeholders = ",".join("?" * len(event_ids))
        with self._writing():
            old = [
                row[0] for row in self._db.execute(f"SELECT clip FROM events WHERE id IN ({placeholders})", event_ids)
            ]
            for index, event_id in enumerate(event_ids):
                offset = None if offsets is None else round(float(offsets[index]), 3)
                self._db.execute(
                    "UPDATE events SET clip = ?, clip_offset = ? WHERE id = ?", (relative, offset, event_id)
                )
            self._share_bytes({relative, *filter(None, old)})

    def _share_bytes(self, clips: set[str]) -> None:
        """Recount the bytes of the events shown in any of ``clips`` (call with the lock held, in a transaction).

        An event counts its snapshot, and its clip only when it is the newest event the clip
        shows (by time, then id: the last one retention deletes). So the sum over events is
        what their files take on disk, and deleting events oldest first frees a shared clip's
        bytes with the last event it shows."""
        names = sorted(clips)
        rows = self._db.execute(
            f"SELECT id, time, snapshot, clip FROM events WHERE clip IN ({','.join('?' * len(names))})", names
        ).fetchall()
        newest: dict[str, tuple[float, int]] = {}
        for event_id, when, _, clip in rows:
            newest[clip] = max(newest.get(clip, (when, event_id)), (when, event_id))
        sizes = {clip: _size(self.folder / clip) for clip in newest}
        updates = []
        for event_id, when, snapshot, clip in rows:
            owned = sizes[clip] if newest[clip] == (when, event_id) else 0
            updates.append(((_size(self.folder / snapshot) if snapshot else 0) + owned, event_id))
        self._db.executemany("UPDATE events SET bytes = ? WHERE id = ?", updates)

    def _refer(self, event_id: int, column: str, relative: str) -> None:
        """Point the event at its file, which is complete and renamed by now; count its bytes."""
        size = (self.folder / relative).stat().st_size
        with self._writing():
            old = self._db.execute(f"SELECT {column} FROM events WHERE id = ?", (event_id,)).fetchone()
            previous = _size(self.folder / old[0]) if old and old[0] and old[0] != relative else 0
            self._db.execute(
                f"UPDATE events SET {column} = ?, bytes = bytes + ? - ? WHERE id = ?",
                (relative, size, previous, event_id),
            )

    # ------------------------------------------------------------------ tracks and line counts

    def see_tracks(self, camera: str, tracks: Sequence[tuple[int, str]], *, time: float | None = None) -> None:
        """Record ``(track_id, label)`` pairs seen at ``time`` (one commit for the whole frame)."""
        now = _now() if time is None else time
        sql = (
            "INSERT INTO tracks VALUES (?, ?, ?, ?, ?) ON CONFLICT (camera, track_id) DO UPDATE SET "
            "label = excluded.label, last_seen = max(last_seen, excluded.last_seen)"
        )
        with self._writing():
            self._db.executemany(sql, [(camera, track_id, label, now, now) for track_id, label in tracks])

    def last_track_id(self, camera: str) -> int:
        """The highest track id ``camera`` has stored (0 for none): a restarted tracker counts on from it."""
        sql = (
            "SELECT max(coalesce((SELECT max(track_id) FROM tracks WHERE camera = ?), 0), "
            "coalesce((SELECT max(track_id) FROM events WHERE camera = ?), 0))"
        )
        with self._lock:
            return int(self._db.execute(sql, (camera, camera)).fetchone()[0])

    def tracks(self, camera: str) -> list[tuple[int, str, float, float]]:
        """``(track_id, label, first_seen, last_seen)`` of ``camera``'s tracks, oldest first."""
        sql = "SELECT track_id, label, first_seen, last_seen FROM tracks WHERE camera = ? ORDER BY first_seen"
        with self._lock:
            return [tuple(row) for row in self._db.execute(sql, (camera,))]

    def count_line(self, camera: str, line: str, direction: str, n: int = 1) -> int:
        """Add ``n`` crossings of ``line`` in ``direction`` (``"in"`` or ``"out"``); the new count."""
        sql = (
            "INSERT INTO line_counts VALUES (?, ?, ?, ?) ON CONFLICT (camera, line, direction) "
            "DO UPDATE SET count = count + excluded.count RETURNING count"
        )
        with self._writing():
            return self._db.execute(sql, (camera, line, direction, n)).fetchone()[0]

    def line_counts(self, camera: str | None = None) -> dict[tuple[str, str, str], int]:
        """``{(camera, line, direction): count}``, of one camera or all."""
        sql = "SELECT camera, line, direction, count FROM line_counts WHERE ? IS NULL OR camera = ?"
        with self._lock:
            return {(c, ln, d): n for c, ln, d, n in self._db.execute(sql, (camera, camera))}

    # ------------------------------------------------------------------ retention and recovery

    def unsent(self) -> int:
        """Outbox messages the broker has not acknowledged yet."""
        with self._lock:
            return self._db.execute(_UNSENT).fetchone()[0]

    def media_bytes(self) -> int:
        """The bytes of every snapshot and clip events refer to."""
        with self._lock:
            return self._db.execute("SELECT COALESCE(SUM(bytes), 0) FROM events").fetchone()[0]

    def retain(self, days: float, max_bytes: int, *, now: float | None = None) -> int:
        """Delete events older than ``days``, then the oldest until their files fit in ``max_bytes``; how many.

        Rows go first, then their files: a crash in between leaves only files that no event
        refers to, which the next open removes.
        """
        cutoff = (_now() if now is None else now) - days * _DAY
        doomed = self._older_than(cutoff) + self._beyond(max_bytes, cutoff)
        self._delete(doomed, cutoff)
        return len(doomed)

    def free_space(self, min_free: int) -> tuple[int, bool]:
        """Delete the oldest events until the disk has ``min_free`` bytes free; (how many, whether it has).

        Nothing is deleted when all the events' files would not make the room (the disk is
        full of other files): emptying the store would not help.
        """
        need = min_free - disk_free(self.folder)
        if need <= 0:
            return 0, True
        rows = self._oldest_first(since=float("-inf"))
        if sum(row[3] for row in rows) < need:
            return 0, False
        doomed = _freeing(rows, need)
        self._delete(doomed, None)
        return len(doomed), disk_free(self.folder) >= min_free

    def _delete(self, doomed: list[tuple[int, str | None, str | None]], cutoff: float | None) -> None:
        """Rows first, then the files no stored event shows; when the disk is too full even to
        delete rows (SQLite writes its log first), the files go first: the next open forgets
        any reference that is left."""
        files = {name for _, *names in doomed for name in names if name}
        try:
            kept = self._delete_rows(doomed, files, cutoff)
        except StorageError as exc:
            if not exc.full:
                raise
            for relative in sorted(files):
                (self.folder / relative).unlink(missing_ok=True)
            kept = self._delete_rows(doomed, files, cutoff)
        for relative in sorted(files - kept):
            (self.folder / relative).unlink(missing_ok=True)

    def _delete_rows(self, doomed, files: set[str], cutoff: float | None) -> set[str]:
        """Delete the events ``doomed`` (and tracks and messages older than ``cutoff``); the files
        of ``files`` that events still show."""
        with self._writing():
            self._db.executemany("DELETE FROM events WHERE id = ?", [(i,) for i, *_ in doomed])
            if cutoff is not None:
                self._db.execute("DELETE FROM tracks WHERE last_seen < ?", (cutoff,))
                self._db.execute("DELETE FROM outbox WHERE time < ?", (cutoff,))  # sent or not: past keeping
            kept = self._still_shown(files)  # clips that newer events share
            if kept:
                self._share_bytes(kept)
        return kept

    def _still_shown(self, files: set[str]) -> set[str]:
        """Those of ``files`` that a stored event still refers to (call with the lock held)."""
        names = sorted(files)
        if not names:
            return set()
        marks = ",".join("?" * len(names))
        sql = f"SELECT clip FROM events WHERE clip IN ({marks}) UNION SELECT snapshot FROM events WHERE snapshot IN ({marks})"
        return {row[0] for row in self._db.execute(sql, names * 2)}

    def _older_than(self, cutoff: float) -> list[tuple[int, str | None, str | None]]:
        sql = "SELECT id, snapshot, clip FROM events WHERE time < ?"
        with self._lock:
            return [tuple(row) for row in self._db.execute(sql, (cutoff,))]

    def _beyond(self, max_bytes: int, cutoff: float) -> list[tuple[int, str | None, str | None]]:
        """The oldest of the events kept by ``cutoff`` whose deletion brings their files within ``max_bytes``."""
        rows = self._oldest_first(since=cutoff)
        return _freeing(rows, sum(row[3] for row in rows) - max_bytes)

    def _oldest_first(self, *, since: float) -> list[tuple[int, str | None, str | None, int]]:
        """``(id, snapshot, clip, bytes)`` of the events from ``since`` on, the oldest first."""
        sql = "SELECT id, snapshot, clip, bytes FROM events WHERE time >= ? ORDER BY time, id"
        with self._lock:
            return [tuple(row) for row in self._db.execute(sql, (since,))]

    def recover(self) -> None:
        """Remove files no event refers to, and forget referred files that are gone.

        Runs on open; call it only while no snapshot or clip is being written, whose
        temporary file it would take for a leftover.
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT id, snapshot, clip FROM events WHERE snapshot IS NOT NULL OR clip IS NOT NULL"
            )
            referred: dict[str, list[tuple[int, str]]] = {}
            for event_id, *names in rows:
                for name, column in _named(names):
                    referred.setdefault(name, []).append((event_id, column))
        self._remove_unreferred(set(referred))
        gone = [where for name, wheres in referred.items() if not (self.folder / name).is_file() for where in wheres]
        for event_id, column in gone:
            logger.warning("event %d's %s is missing; the event is kept without it", event_id, column)
            with self._writing():
                self._db.execute(f"UPDATE events SET {column} = NULL WHERE id = ?", (event_id,))
        if gone:
            self._recount_bytes([event_id for event_id, _ in gone])

    def _remove_unreferred(self, referred: set[str]) -> None:
        for path in sorted((self.folder / MEDIA).rglob("*"), reverse=True):  # children before their folders
            relative = path.relative_to(self.folder).as_posix()
            if path.is_dir() and path.name.startswith("."):
                shutil.rmtree(path, ignore_errors=True)  # a temporary folder left by a crash mid-write
            elif path.is_file() and relative not in referred:
                path.unlink(missing_ok=True)

    def _recount_bytes(self, event_ids: list[int]) -> None:
        with self._writing():
            rows = self._db.execute(
                f"SELECT id, snapshot, clip FROM events WHERE id IN ({','.join('?' * len(event_ids))})", event_ids
            ).fetchall()
            alone = [(_size(self.folder / s) if s else 0, event_id) for event_id, s, clip in rows if not clip]
            self._db.executemany("UPDATE events SET bytes = ? WHERE id = ?", alone)  # those with a clip: below
            clips = {clip for _, _, clip in rows if clip}
            if clips:
                self._share_bytes(clips)


class Outbox:
    """The outbox of the event database in ``folder``, read by the MQTT publisher on a connection of its own.

    Messages go out in id order, the order their events were stored; one is marked sent once
    the broker acknowledged it. Marks are synced less strictly than events (``synchronous =
    NORMAL``): a power cut may forget the last marks, and those messages go out again.
    """

    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        with writable_folder(folder):
            folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = _connect(folder / DATABASE)
        self._db.execute("PRAGMA synchronous = NORMAL")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def first_unsent(self) -> Outgoing | None:
        """The oldest message the broker has not acknowledged, or None."""
        sql = "SELECT id, event_id, topic, payload FROM outbox WHERE sent = 0 ORDER BY id LIMIT 1"
        with self._lock:
            row = self._db.execute(sql).fetchone()
        return Outgoing(*row) if row else None

    def unsent(self) -> int:
        """How many messages wait for the broker."""
        with self._lock:
            return self._db.execute(_UNSENT).fetchone()[0]

    def mark_sent(self, message_id: int) -> None:
        """The broker acknowledged ``message_id``; sent messages older than the last ``SENT_KEPT`` go."""
        with self._lock, self._db:
            self._db.execute("UPDATE outbox SET sent = 1 WHERE id = ?", (message_id,))
            self._db.execute("DELETE FROM outbox WHERE sent = 1 AND id <= ?", (message_id - SENT_KEPT,))


def _connect(path: Path) -> sqlite3.Connection:
    """The database at ``path``, created when missing; one sentence when it is not one or cannot be opened."""
    try:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level="DEFERRED")
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode = WAL")  # readers (the web page) never block the writer
        # FULL: the WAL is synced at every commit, so a committed event survives a power cut
        # too. NORMAL would survive kill -9 (the commit is in the OS's cache) but could lose the
        # last commits on power loss, which edge boxes see; events are few, the sync is cheap.
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA busy_timeout = 5000")
        db.executescript(_SCHEMA)
        _add_missing_columns(db)
    except sqlite3.DatabaseError as exc:
        if "full" in cause(exc):  # SQLITE_FULL: the file is fine, the disk is not
            raise EdgevisionError(
                f"cannot open the event database {path}: its disk is full ({cause(exc)}); free some space."
            ) from None
        raise EdgevisionError(
            f"cannot open the event database {path} ({cause(exc)}); move it away to start a new one."
        ) from None
    return db


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Bring a database made by an older edgevision up to the schema (columns are only ever added)."""
    present = {row["name"] for row in db.execute("PRAGMA table_info(events)")}
    for column, kind in {"direction": "TEXT", "dwell_seconds": "REAL", "clip_offset": "REAL"}.items():
        if column not in present:
            with db:
                db.execute(f"ALTER TABLE events ADD COLUMN {column} {kind}")


def _freeing(
    rows: list[tuple[int, str | None, str | None, int]], amount: int
) -> list[tuple[int, str | None, str | None]]:
    """``(id, snapshot, clip)`` of the first of ``rows`` (oldest first) whose bytes add up to ``amount``."""
    doomed = []
    for event_id, snapshot, clip, size in rows:
        if amount <= 0:
            break
        doomed.append((event_id, snapshot, clip))
        amount -= size
    return doomed


def _named(names: list[str | None]) -> list[tuple[str, str]]:
    return [(name, column) for name, column in zip(names, ("snapshot", "clip")) if name]


def _box_json(box: Sequence[float] | None) -> str | None:
    return None if box is None else json.dumps([round(float(v), 2) for v in box])


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _now() -> float:
    return time.time()
