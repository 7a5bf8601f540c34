"""The fleet view: what every watcher on one broker publishes, gathered for ``edgevision dashboard``.

:class:`FleetLink` subscribes (QoS 1, a persistent session under a stable client id, so
events published while it was briefly away are delivered when it is back) to the topics
:func:`~edgevision.watch.topics.subscriptions` lists. Events go into a :class:`FleetStore`
(SQLite, one row per event ``id``: a QoS 1 repeat counts once; old ones pruned); the latest
availability, occupancy, line counts and snapshot of each watcher and camera live in a
:class:`Fleet` in memory, rebuilt from the broker's retained messages at each start.

>>> fleet = Fleet(FleetStore(Path("fleet-data")))               # doctest: +SKIP
>>> link = FleetLink(config.mqtt, fleet); link.start()           # doctest: +SKIP
>>> fleet.overview()["watchers"]                                 # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgevision.errors import EdgevisionError, cause
from edgevision.watch.config import MqttConfig
from edgevision.watch.mqtt import make_client, reason_of
from edgevision.watch.topics import OFFLINE, ONLINE, Parsed, parse_topic, subscriptions

logger = logging.getLogger(__name__)

DATABASE = "fleet.db"
MAX_SNAPSHOT = 8_000_000  # bytes: a larger "snapshot" is not one a watcher sent
PRUNE_EVERY = 500  # events added between two prunings (also pruned at start and hourly)
SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,           -- the payload's stable id, WATCHER:EVENT_ID: a repeat is ignored
    watcher TEXT NOT NULL,
    camera TEXT NOT NULL,
    type TEXT NOT NULL,
    time REAL NOT NULL,            -- when it happened, on the watcher's clock
    received REAL NOT NULL,        -- when it came, on ours
    payload TEXT NOT NULL          -- the JSON as it came
);
CREATE INDEX IF NOT EXISTS events_time ON events (time);
CREATE INDEX IF NOT EXISTS events_watcher ON events (watcher, camera, time);
"""


# ---------------------------------------------------------------------------------- the event store
class FleetStore:
    """The events of every watcher in ``folder/fleet.db``, each ``id`` once, the oldest pruned."""

    def __init__(self, folder: str | Path, *, retain_days: float = 30.0, max_events: int = 1_000_000) -> None:
        self.folder = Path(folder)
        self.retain_s, self.max_events = retain_days * 86400.0, max_events
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.folder / DATABASE, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise EdgevisionError(
                f"cannot keep events in {self.folder} ({cause(exc)}); give --data a folder."
            ) from None
        self._lock = threading.Lock()
        self._added = 0
        self.prune()

    def add(self, watcher: str, camera: str, event: dict) -> bool:
        """Keep ``event`` (a checked payload); False when its ``id`` was kept already."""
        row = (event["id"], watcher, camera, event["type"], event["time"], time.time(), json.dumps(event))
        with self._lock:
            added = self._db.execute("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", row).rowcount == 1
            self._added += added
        if added and self._added % PRUNE_EVERY == 0:
            self.prune()
        return added

    def events(
        self,
        *,
        watcher: str | None = None,
        camera: str | None = None,
        type: str | None = None,
        before: float | None = None,
        limit: int = 100,
    ) -> list[dict]:
        """The newest events first (those older than ``before`` only), each with when it was ``received``."""
        where, values = _filters(watcher=watcher, camera=camera, type=type)
        if before is not None:
            where.append("time < ?")
            values.append(before)
        sql = f"SELECT payload, received FROM events {_where(where)} ORDER BY time DESC, id DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (*values, limit)).fetchall()
        return [{**json.loads(payload), "received": received} for payload, received in rows]

    def counts(self) -> dict[tuple[str, str], int]:
        """How many events are kept per watcher and camera."""
        with self._lock:
            rows = self._db.execute("SELECT watcher, camera, count(*) FROM events GROUP BY watcher, camera")
            return {(w, c): n for w, c, n in rows.fetchall()}

    def prune(self) -> int:
        """Drop the events past ``retain_days``, then the oldest beyond ``max_events``; how many went."""
        with self._lock:
            gone = self._db.execute("DELETE FROM events WHERE time < ?", (time.time() - self.retain_s,)).rowcount
            gone += self._db.execute(
                "DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY time DESC, id DESC LIMIT -1 OFFSET ?)",
                (self.max_events,),
            ).rowcount
        return gone

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _filters(**equal: str | None) -> tuple[list[str], list[Any]]:
    given = {k: v for k, v in equal.items() if v}
    return [f"{k} = ?" for k in given], list(given.values())


def _where(conditions: list[str]) -> str:
    return f"WHERE {' AND '.join(conditions)}" if conditions else ""


def checked_event(parsed: Parsed, payload: bytes) -> dict | None:
    """The event JSON of ``payload`` if it is one of ``parsed.watcher`` on ``parsed.camera``, else None.

    >>> parsed = Parsed("events", "shed", "door")
    >>> checked_event(parsed, b'{"id": "shed:1", "type": "enter", "time": 5.0}')["id"]
    'shed:1'
    >>> checked_event(parsed, b'{"id": "barn:1", "type": "enter", "time": 5.0}') is None   # another's id
    True
    """
    try:
        event = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(event, dict):
        return None
    ok = (
        isinstance(event.get("id"), str)
        and event["id"].startswith(f"{parsed.watcher}:")
        and isinstance(event.get("type"), str)
        and isinstance(event.get("time"), (int, float))
        and not isinstance(event["time"], bool)
        and math.isfinite(event["time"])
    )
    return {**event, "watcher": parsed.watcher, "camera": parsed.camera} if ok else None


# ---------------------------------------------------------------------------------- the state in memory
@dataclass
class CameraState:
    """The latest retained states of one camera of one watcher."""

    occupancy: dict[str, int] = field(default_factory=dict)
    lines: dict[str, dict[str, int]] = field(default_factory=dict)
    snapshot: bytes | None = None
    snapshot_at: float | None = None  # when it came (a retained one: when the dashboard started)


@dataclass
class WatcherState:
    """One watcher: online or offline (None: not said yet), when it was last heard live, its cameras."""

    availability: str | None = None
    since: float | None = None  # when the availability last changed
    last_seen: float | None = None  # the last live (not retained) message
    storage: dict | None = None  # its storage state (ok, problem, free_gb, events_not_stored), once heard
    cameras: dict[str, CameraState] = field(default_factory=dict)


@dataclass
class Broker:
    """The connection to the broker, as the page shows it."""

    address: str
    state: str = "connecting"  # connecting, connected, unreachable, refused
    detail: str = ""  # a sentence for the page when not connected
    since: float = field(default_factory=time.time)


class Fleet:
    """Every watcher's state, updated from MQTT messages; events go to ``store``."""

    def __init__(self, store: FleetStore, *, prefix: str = "edgevision", address: str = "") -> None:
        self.store, self.prefix = store, prefix
        self.broker = Broker(address)
        self.watchers: dict[str, WatcherState] = {}
        self._lock = threading.Lock()
        self._malformed: set[str] = set()  # topics already warned about

    def receive(self, topic: str, payload: bytes, *, retained: bool = False) -> None:
        """Take one message; anything not a watcher's is ignored."""
        parsed = parse_topic(self.prefix, topic)
        if parsed is None:
            return
        if parsed.kind == "events":
            self._event(topic, parsed, payload)
        with self._lock:
            watcher = self.watchers.setdefault(parsed.watcher, WatcherState())
            if not retained:
                watcher.last_seen = time.time()
            if parsed.kind == "availability":
                self._availability(parsed.watcher, watcher, payload.decode(errors="replace"), retained)
            elif parsed.kind == "storage":
                watcher.storage = _storage(payload)
                if watcher.storage is None and payload:
                    self._warn_once(topic, f"fleet: ignored a message on {topic} that is not a storage state")
            elif parsed.kind != "events":
                self._state(watcher, parsed, payload)

    def _event(self, topic: str, parsed: Parsed, payload: bytes) -> None:
        event = checked_event(parsed, payload)
        if event is None:
            self._warn_once(topic, f"fleet: ignored a message on {topic} that is not an event of {parsed.watcher}")
            return
        self.store.add(parsed.watcher, parsed.camera, event)

    def _availability(self, name: str, watcher: WatcherState, said: str, retained: bool) -> None:
        state = said if said in (ONLINE, OFFLINE) else None
        if state == watcher.availability:
            return
        watcher.availability, watcher.since = state, time.time()
        if state is not None:
            heard = " (as the broker last heard)" if retained else ""
            logger.info("fleet: watcher %s is %s%s", name, state, heard)

    def _state(self, watcher: WatcherState, parsed: Parsed, payload: bytes) -> None:
        camera = watcher.cameras.setdefault(parsed.camera, CameraState())
        if parsed.kind == "snapshot":
            fits = 0 < len(payload) <= MAX_SNAPSHOT
            camera.snapshot, camera.snapshot_at = (payload, time.time()) if fits else (None, None)
            return
        value = _count(payload)
        if parsed.kind == "occupancy":
            _set(camera.occupancy, parsed.name, value)
        else:
            line = camera.lines.setdefault(parsed.name, {})
            _set(line, parsed.kind, value)
            if not line:
                del camera.lines[parsed.name]

    def _warn_once(self, topic: str, text: str) -> None:
        if topic not in self._malformed:
            self._malformed.add(topic)
            logger.warning(text)

    # -- what the page reads ------------------------------------------------------------------------
    def snapshot(self, watcher: str, camera: str) -> bytes | None:
        with self._lock:
            state = self.watchers.get(watcher)
            cam = state.cameras.get(camera) if state else None
            return cam.snapshot if cam else None

    def overview(self) -> dict:
        """The JSON of ``/api/fleet``: the broker connection, then each watcher with its cameras, by name."""
        counts = self.store.counts()
        with self._lock:
            watchers = [
                _watcher_record(name, w, counts) for name, w in sorted(self.watchers.items()) if _known(name, w)
            ]
            broker = vars(self.broker).copy()
        return {"broker": broker, "watchers": watchers}

    def connection(self, state: str, detail: str = "") -> None:
        """Note the broker connection's state (``detail``: the sentence the page shows)."""
        with self._lock:
            if (self.broker.state, self.broker.detail) != (state, detail):
                self.broker.state, self.broker.detail, self.broker.since = state, detail, time.time()


def _known(name: str, watcher: WatcherState) -> bool:
    """A watcher the page lists: one whose availability or some state is known (not only emptied topics)."""
    return watcher.availability is not None or bool(watcher.cameras) or watcher.last_seen is not None


def _watcher_record(name: str, watcher: WatcherState, counts: dict[tuple[str, str], int]) -> dict:
    cameras = set(watcher.cameras) | {c for w, c in counts if w == name}
    return {
        "name": name,
        "state": watcher.availability or "unknown",
        "since": watcher.since,
        "last_seen": watcher.last_seen,
        "events": sum(n for (w, _), n in counts.items() if w == name),
        "storage": watcher.storage,
        "cameras": [_camera_record(name, c, watcher.cameras.get(c), counts) for c in sorted(cameras)],
    }


def _camera_record(watcher: str, name: str, camera: CameraState | None, counts: dict) -> dict:
    camera = camera or CameraState()
    snapshot = f"/api/watchers/{watcher}/cameras/{name}/snapshot.jpg" if camera.snapshot else None
    return {
        "name": name,
        "occupancy": dict(sorted(camera.occupancy.items())),
        "lines": {line: dict(c) for line, c in sorted(camera.lines.items())},
        "events": counts.get((watcher, name), 0),
        "snapshot": snapshot,
        "snapshot_at": camera.snapshot_at,
    }


def _storage(payload: bytes) -> dict | None:
    """A watcher's storage state from its JSON; None for an emptied topic or anything malformed."""
    try:
        state = json.loads(payload)
        problem, free, refused = state.get("problem"), float(state["free_gb"]), int(state["events_not_stored"])
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    if not isinstance(state.get("ok"), bool) or not (problem is None or isinstance(problem, str)):
        return None
    return {"ok": state["ok"], "problem": problem, "free_gb": free, "events_not_stored": refused}


def _count(payload: bytes) -> int | None:
    """A state's number; None for an emptied topic (or anything else)."""
    try:
        value = int(payload)
    except ValueError:
        return None
    return value if value >= 0 else None


def _set(values: dict[str, int], key: str, value: int | None) -> None:
    if value is None:
        values.pop(key, None)
    else:
        values[key] = value


# ---------------------------------------------------------------------------------- the subscriber
class FleetLink:
    """Subscribes to every watcher under ``settings.topic_prefix`` and hands each message to ``fleet``.

    paho's network thread connects and reconnects (1 s, doubling up to 30 s); a broker that
    is down or refuses is one log line per change and a sentence on the page, never a crash.
    """

    def __init__(self, settings: MqttConfig, fleet: Fleet) -> None:
        self.settings, self.fleet = settings, fleet
        self._client: Any = None
        self._said = ""
        self._stopping = False

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def start(self) -> None:
        self._client = make_client(self.settings, None, clean_session=False)
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.connect_async(self.settings.host, self.settings.port, keepalive=self.settings.keepalive)
        self._client.loop_start()

    def stop(self, *, timeout: float = 1.5) -> None:
        """Disconnect (the broker keeps the session and queues what comes meanwhile) and end paho's thread."""
        if self._client is None:
            return
        self._stopping = True
        self._client.disconnect()
        ender = threading.Thread(target=self._client.loop_stop, daemon=True)
        ender.start()
        ender.join(timeout)

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            bad_login = str(reason) in ("Not authorized", "Bad user name or password")
            hint = "; check --username and the password" if bad_login else ""
            self._note("refused", f"the broker at {self.address} refused the connection ({reason}){hint}")
            return
        client.subscribe([(topic, 1) for topic in subscriptions(self.settings.topic_prefix)])
        self._note("connected", "")

    def _on_connect_fail(self, client, userdata) -> None:
        exc = sys.exc_info()[1]  # paho calls this while it handles the connection's OSError
        reason = f" ({reason_of(exc)})" if exc is not None else ""
        self._note("unreachable", f"broker unreachable: cannot reach {self.address}{reason}; check --mqtt")

    def _on_disconnect(self, client, userdata, flags, reason, properties) -> None:
        if self._said.startswith("connected") and not self._stopping:
            self._note("unreachable", f"broker unreachable: lost the connection to {self.address}")

    def _on_message(self, client, userdata, message) -> None:
        try:
            self.fleet.receive(message.topic, message.payload, retained=bool(message.retain))
        except sqlite3.Error as exc:
            logger.error("fleet: cannot keep an event in %s (%s)", self.fleet.store.folder, cause(exc))

    def _note(self, state: str, detail: str) -> None:
        """Tell the page; log one line per change (not one per retry)."""
        self.fleet.connection(state, detail)
        said = f"{state} {detail}"
        if said != self._said:
            self._said = said
            if state == "connected":
                logger.info("fleet: connected to %s, watching %s/+/...", self.address, self.settings.topic_prefix)
            else:
                logger.warning("fleet: %s, retrying", detail)
