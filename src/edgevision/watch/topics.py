"""What ``edgevision watch`` publishes over MQTT: topic names, event payloads, states and Home Assistant discovery.

Pure functions without a network; :mod:`edgevision.watch.mqtt` sends what they make. Every
topic lies under ``<topic_prefix>/<watcher>``, so several watchers share one broker even
when their cameras have the same names.

>>> topics = Topics("edgevision", "shed")
>>> topics.events("garden"), topics.occupancy("garden", "lawn"), topics.count("garden", "path", "in")
('edgevision/shed/garden/events', 'edgevision/shed/garden/lawn/occupancy', 'edgevision/shed/garden/path/in')
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import metadata

from edgevision.watch.config import MqttConfig, WatchConfig
from edgevision.watch.store import Message, StoredEvent

ONLINE, OFFLINE = "online", "offline"
DIRECTIONS = ("in", "out")


@dataclass(frozen=True)
class Topics:
    """The topics of one watcher: ``prefix/watcher/...``."""

    prefix: str
    watcher: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.watcher}"

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def storage(self) -> str:
        return f"{self.base}/storage"

    def events(self, camera: str) -> str:
        return f"{self.base}/{camera}/events"

    def snapshot(self, camera: str) -> str:
        return f"{self.base}/{camera}/snapshot"

    def occupancy(self, camera: str, zone: str) -> str:
        return f"{self.base}/{camera}/{zone}/occupancy"

    def count(self, camera: str, line: str, direction: str) -> str:
        return f"{self.base}/{camera}/{line}/{direction}"


@dataclass(frozen=True)
class Parsed:
    """What a topic under ``prefix`` is about: ``kind`` is one of :data:`KINDS`, ``name`` a zone or line."""

    kind: str
    watcher: str
    camera: str | None = None
    name: str | None = None


KINDS = ("availability", "storage", "events", "snapshot", "occupancy", *DIRECTIONS)


def subscriptions(prefix: str) -> list[str]:
    """The filters that receive everything every watcher under ``prefix`` publishes (discovery aside)."""
    return [
        f"{prefix}/+/availability",
        f"{prefix}/+/storage",
        f"{prefix}/+/+/events",
        f"{prefix}/+/+/snapshot",
        *(f"{prefix}/+/+/+/{kind}" for kind in ("occupancy", *DIRECTIONS)),
    ]


def parse_topic(prefix: str, topic: str) -> Parsed | None:
    """The inverse of :class:`Topics`: what ``topic`` is about, or None when no watcher publishes it.

    >>> parse_topic("edgevision", "edgevision/shed/garden/path/in")
    Parsed(kind='in', watcher='shed', camera='garden', name='path')
    >>> parse_topic("edgevision", "edgevision/shed/availability").kind, parse_topic("edgevision", "other/x") is None
    ('availability', True)
    """
    if not topic.startswith(prefix + "/"):
        return None
    levels = topic[len(prefix) + 1 :].split("/")
    kind = levels[-1]
    shapes = {2: ("availability", "storage"), 3: ("events", "snapshot"), 4: ("occupancy", *DIRECTIONS)}
    if kind not in shapes.get(len(levels), ()) or not all(levels[:-1]):
        return None
    return Parsed(kind, levels[0], *levels[1:-1])


def topics_of(mqtt: MqttConfig) -> Topics:
    return Topics(mqtt.topic_prefix, mqtt.watcher)


def event_payload(event: StoredEvent, watcher: str) -> dict:
    """The JSON of one event as MQTT carries it; ``id`` is the same each time it is sent, for de-duplication."""
    base = f"/api/events/{event.id}"
    return {
        "id": f"{watcher}:{event.id}",
        "watcher": watcher,
        "event_id": event.id,
        "camera": event.camera,
        "type": event.type,
        "time": event.time,
        "zone": event.zone,
        "direction": event.direction,
        "dwell_seconds": event.dwell_seconds,
        "track_id": event.track_id,
        "label": event.label,
        "score": event.score,
        "box": list(event.box) if event.box else None,
        "snapshot": f"{base}/snapshot.jpg",
        "clip": f"{base}/clip.mp4",
    }


class EventMessages:
    """Makes the outbox message of a stored event: its camera's events topic and its JSON."""

    def __init__(self, topics: Topics) -> None:
        self.topics = topics

    def __call__(self, event: StoredEvent) -> Message:
        payload = event_payload(event, self.topics.watcher)
        return self.topics.events(event.camera), json.dumps(payload, separators=(",", ":"))


def state_messages(
    topics: Topics, camera: str, occupancy: dict[str, int], line_counts: dict[str, dict[str, int]]
) -> dict[str, str]:
    """The retained state topics of ``camera``: objects in each zone, crossings of each line by direction."""
    states = {topics.occupancy(camera, zone): str(n) for zone, n in occupancy.items()}
    for line, counts in line_counts.items():
        states.update({topics.count(camera, line, d): str(counts.get(d, 0)) for d in DIRECTIONS})
    return states


def storage_message(topics: Topics, problem: str | None, free_bytes: int, not_stored: int) -> dict[str, str]:
    """The retained storage state of the watcher: whether its store takes writes, and its disk's free space.

    >>> storage_message(Topics("edgevision", "shed"), None, 7_349_000_000, 0)
    {'edgevision/shed/storage': '{"ok":true,"problem":null,"free_gb":7.35,"events_not_stored":0}'}
    """
    state = {"ok": problem is None, "problem": problem, "free_gb": round(free_bytes / 1e9, 2)}
    return {topics.storage: json.dumps({**state, "events_not_stored": not_stored}, separators=(",", ":"))}


def retained_topics(config: WatchConfig) -> set[str]:
    """Every retained topic ``config`` publishes (beside the discovery configs)."""
    topics = topics_of(config.mqtt)
    found = {topics.availability, topics.storage}
    for name, camera in config.cameras.items():
        found.add(topics.snapshot(name))
        found.update(topics.occupancy(name, zone) for zone in camera.zones)
        found.update(topics.count(name, line, d) for line in camera.lines for d in DIRECTIONS)
    return found


def discovery_messages(config: WatchConfig) -> dict[str, str]:
    """Home Assistant's retained config messages for ``config``: every entity under one device per watcher.

    Per zone an occupancy binary sensor and a count sensor, per counted direction of each
    line a total-increasing sensor, per camera a camera fed by its latest event snapshot; for
    the watcher, a problem binary sensor that is on while its store refuses writes (a full
    disk) and a sensor of the free space on its disk. Empty when discovery is off.
    """
    mqtt = config.mqtt
    if not mqtt.discovery.enabled:
        return {}
    entities = Entities(mqtt)
    entities.storage()
    for name, camera in config.cameras.items():
        for zone in camera.zones:
            entities.zone(name, zone)
        for line, settings in camera.lines.items():
            for direction in DIRECTIONS:
                if settings.direction in ("both", direction):
                    entities.line(name, line, direction)
        entities.camera(name)
    return {topic: json.dumps(payload, separators=(",", ":")) for topic, payload in entities.configs.items()}


class Entities:
    """Home Assistant discovery configs of one watcher, collected by :func:`discovery_messages`."""

    def __init__(self, mqtt: MqttConfig) -> None:
        self.mqtt = mqtt
        self.topics = topics_of(mqtt)
        self.configs: dict[str, dict] = {}

    def zone(self, camera: str, zone: str) -> None:
        state = self.topics.occupancy(camera, zone)
        self._add(
            "binary_sensor",
            camera,
            f"{zone} occupancy",
            state_topic=state,
            device_class="occupancy",
            value_template="{{ 'ON' if value | int(0) > 0 else 'OFF' }}",
        )
        self._add(
            "sensor", camera, f"{zone} count", state_topic=state, state_class="measurement", icon="mdi:account-group"
        )

    def line(self, camera: str, line: str, direction: str) -> None:
        state = self.topics.count(camera, line, direction)
        self._add(
            "sensor",
            camera,
            f"{line} {direction}",
            state_topic=state,
            state_class="total_increasing",
            icon="mdi:transit-transfer",
        )

    def camera(self, camera: str) -> None:
        self._add("camera", camera, "last event", topic=self.topics.snapshot(camera))

    def storage(self) -> None:
        state = self.topics.storage
        self._add(
            "binary_sensor",
            None,
            "storage problem",
            state_topic=state,
            device_class="problem",
            value_template="{{ 'OFF' if value_json.ok else 'ON' }}",
            json_attributes_topic=state,
            entity_category="diagnostic",
        )
        self._add(
            "sensor",
            None,
            "storage free",
            state_topic=state,
            value_template="{{ value_json.free_gb }}",
            device_class="data_size",
            unit_of_measurement="GB",
            state_class="measurement",
            entity_category="diagnostic",
        )

    def _add(self, component: str, camera: str | None, what: str, **fields: str) -> None:
        """One entity, named ``<camera> <what>`` (``<what>`` for the watcher itself)."""
        object_id = f"{camera}_{what.replace(' ', '_')}" if camera else what.replace(" ", "_")
        name = f"{camera} {what}" if camera else what
        watcher = self.topics.watcher
        topic = f"{self.mqtt.discovery.prefix}/{component}/{watcher}/{object_id}/config"
        self.configs[topic] = {
            "name": name,
            "unique_id": f"edgevision_{watcher}_{object_id}",
            **fields,
            "qos": 1,
            "availability_topic": self.topics.availability,
            "payload_available": ONLINE,
            "payload_not_available": OFFLINE,
            "device": device(watcher),
            "origin": {"name": "edgevision", "sw_version": version()},
        }


def device(watcher: str) -> dict:
    """The Home Assistant device every entity of ``watcher`` belongs to."""
    return {
        "identifiers": [f"edgevision_{watcher}"],
        "name": f"edgevision {watcher}",
        "manufacturer": "edgevision",
        "model": "edgevision watch",
        "sw_version": version(),
    }


def version() -> str:
    try:
        return metadata.version("edgevision")
    except metadata.PackageNotFoundError:
        return "unknown"
