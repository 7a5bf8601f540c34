"""MQTT of the watch service against a real mosquitto started here, read by a real paho subscriber.

Events, retained states, availability and its last will, Home Assistant discovery, username
and password, TLS with a CA made here, a broker outage mid-run and a ``kill -9`` of the
watcher while the broker is down: nothing is mocked.
"""

from __future__ import annotations

import getpass
import json
import logging
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from contextlib import closing
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import write_first_frames
from edgevision.watch.config import SAFE_NAME, WatchConfig, WatchConfigError, host_name, watch_config_from_dict
from edgevision.watch.mqtt import MqttLink
from edgevision.watch.serve import _Running
from edgevision.watch.service import Service
from edgevision.watch.store import DATABASE, EventStore, Outbox
from edgevision.watch.topics import EventMessages, Topics
from test_watch_service import free_port, poll, start_watch

mqtt = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed: pip install 'edgevision[watch]'")

W = "shed"  # the watcher id of these tests
BASE = f"edgevision/{W}"
WALKWAY = [[0.0, 0.3], [1.0, 0.3], [1.0, 1.0], [0.0, 1.0]]  # the lower part of vtest.avi, where people walk
MIDDLE = {"points": [[0.5, 0.0], [0.5, 1.0]]}  # people walk across it
EVENT_KEYS = {"id", "watcher", "event_id", "camera", "type", "time", "zone", "direction", "dwell_seconds"}
EVENT_KEYS |= {"track_id", "label", "score", "box", "snapshot", "clip"}


def mosquitto() -> str:
    """The broker's program; Debian puts it in /usr/sbin, which is not always on PATH."""
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto): the MQTT tests need a real broker")
    return found


class Broker:
    """A mosquitto of its own on a free port of 127.0.0.1; ``settings`` are added to its config."""

    def __init__(self, folder: Path, *settings: str, persistence: bool = False) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = folder / "mosquitto.log"
        lines = [f"listener {self.port} 127.0.0.1", f"user {getpass.getuser()}", *settings]
        if not any(s.startswith("allow_anonymous") for s in settings):
            lines.append("allow_anonymous true")
        lines += [f"persistence {str(persistence).lower()}", f"persistence_location {folder}/"]
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen | None = None

    def start(self) -> Broker:
        with open(self.log, "a") as log:
            self.process = subprocess.Popen([mosquitto(), "-c", str(self.conf)], stdout=log, stderr=log)
        poll(lambda: self.process.poll() is not None or _accepts(self.port), timeout=10, every=0.05)
        assert self.process.poll() is None, self.log.read_text()
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a paused broker cannot act on SIGTERM
            self.process.terminate()  # SIGTERM: mosquitto ends between packets and saves its sessions
            self.process.wait(10)


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Subscriber:
    """A paho client that keeps every message of ``topic`` (QoS 1); ready once its subscription is acknowledged."""

    def __init__(self, port: int, topic: str = "#", *, client_id: str = "", clean: bool = True, **options) -> None:
        self.messages: list = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
        if "auth" in options:
            self.client.username_pw_set(*options["auth"])
        if "ca" in options:
            self.client.tls_set(ca_certs=str(options["ca"]))
        self.client.on_connect = lambda client, *_: client.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = lambda client, userdata, message: self.messages.append(message)
        self.client.reconnect_delay_set(1, 2)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        poll(self.subscribed.is_set, timeout=10, every=0.02)

    def payloads(self, topic: str) -> list[bytes]:
        return [m.payload for m in list(self.messages) if m.topic == topic]

    def events(self) -> list:
        return [m for m in list(self.messages) if m.topic.endswith("/events")]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def retained(port: int, topic: str = "#", **options) -> dict[str, bytes]:
    """The retained messages of ``topic`` now: what a client subscribing at this moment is sent."""
    late = Subscriber(port, topic, **options)
    count = -1
    while count != len(late.messages):  # retained messages come right after the subscription
        count = len(late.messages)
        time.sleep(0.2)
    late.close()
    return {m.topic: m.payload for m in late.messages if m.retain}


def event_ids(messages) -> list[str]:
    return [json.loads(m.payload)["id"] for m in messages]


def stored_ids(store: EventStore) -> list[str]:
    """The payload ids of every stored event, oldest first."""
    return [f"{W}:{e.id}" for e in sorted(store.events(limit=100_000), key=lambda e: e.id)]


def unsent_ids(store_folder: Path) -> list[str]:
    """The payload ids of the outbox messages the broker has not acknowledged, in the order they go out."""
    with closing(sqlite3.connect(store_folder / DATABASE)) as db:
        return [f"{W}:{i}" for (i,) in db.execute("SELECT event_id FROM outbox WHERE sent = 0 ORDER BY id")]


@pytest.fixture
def broker(tmp_path):
    broker = Broker(tmp_path / "broker").start()
    yield broker
    broker.stop()


def watch_config(folder: Path, clip: Path, port: int, **mqtt_settings) -> WatchConfig:
    camera = {"source": str(clip), "zones": {"walkway": WALKWAY}, "lines": {"middle": MIDDLE}}
    values = {
        "storage": {"path": str(folder / "data")},
        "cameras": {"door": camera},
        "mqtt": {"host": "127.0.0.1", "port": port, "client_id": W, **mqtt_settings},
    }
    return watch_config_from_dict(values, base=folder)


def run_clip(config: WatchConfig, predictor, link: MqttLink, *, on_event=None) -> Service:
    """Every frame of the clip through a started service; the service, still running, once the model took the last."""
    service = Service(config, loader=lambda model: predictor, paced=False, on_event=on_event, outlet=link)
    service.start()
    link.start()
    camera = service.cameras["door"]
    poll(lambda: camera.state == "stopped" and not camera.ready, timeout=120, every=0.05)
    time.sleep(0.2)  # the model's last frame
    return service


# ---------------------------------------------------------------------------------------------- in-process


def test_events_states_discovery_and_availability(tmp_path, clip, predictor, broker):
    live = Subscriber(broker.port)
    config = watch_config(tmp_path, clip, broker.port)
    link = MqttLink(config)
    service = run_clip(config, predictor, link)
    try:
        expected = stored_ids(service.store)
        poll(lambda: len(live.events()) >= len(expected), timeout=20, every=0.05)
        status = service.cameras_status()[0]
        stored = {f"{W}:{e.id}": e for e in service.store.events(limit=1000)}
    finally:
        service.stop()
        link.stop()
    assert len(expected) >= 3 and "cross" in {e.type for e in stored.values()}

    events = live.events()
    assert event_ids(events) == expected  # every stored event, once, in order
    for message in events:
        payload = json.loads(message.payload)
        event = stored[payload["id"]]
        assert message.topic == f"{BASE}/door/events" and message.qos == 1 and not message.retain
        assert set(payload) == EVENT_KEYS and (payload["watcher"], payload["camera"]) == (W, "door")
        assert (payload["event_id"], payload["type"], payload["zone"]) == (event.id, event.type, event.zone)
        assert (payload["track_id"], payload["label"], payload["direction"]) == (
            event.track_id,
            event.label,
            event.direction,
        )
        assert payload["time"] == event.time and payload["box"] == list(event.box)
        assert payload["snapshot"] == f"/api/events/{event.id}/snapshot.jpg"
        assert payload["clip"] == f"/api/events/{event.id}/clip.mp4"

    assert live.payloads(f"{BASE}/availability") == [b"online", b"offline"]  # offline said at the clean stop
    kept = retained(broker.port)
    assert kept[f"{BASE}/availability"] == b"offline"
    assert kept[f"{BASE}/door/walkway/occupancy"] == str(status["occupancy"]["walkway"]).encode()
    counts = status["line_counts"]["middle"]
    assert counts["in"] + counts["out"] >= 1
    assert kept[f"{BASE}/door/middle/in"] == str(counts["in"]).encode()
    assert kept[f"{BASE}/door/middle/out"] == str(counts["out"]).encode()
    last = stored[expected[-1]]
    assert kept[f"{BASE}/door/snapshot"] == (config.storage.path / last.snapshot).read_bytes()
    assert cv2.imdecode(np.frombuffer(kept[f"{BASE}/door/snapshot"], np.uint8), cv2.IMREAD_COLOR) is not None
    storage = json.loads(kept[f"{BASE}/storage"])  # the watcher's store took every write, and its disk has room
    assert (storage["ok"], storage["problem"], storage["events_not_stored"]) == (True, None, 0)
    assert storage["free_gb"] > 0
    check_discovery({t: json.loads(p) for t, p in kept.items() if t.startswith("homeassistant/")})


def check_discovery(configs: dict[str, dict]) -> None:
    """One device for the watcher: an occupancy binary sensor and a count per zone, a sensor per line direction, a
    camera; and the watcher's storage problem and free space."""
    assert set(configs) == {
        f"homeassistant/binary_sensor/{W}/storage_problem/config",
        f"homeassistant/sensor/{W}/storage_free/config",
        f"homeassistant/binary_sensor/{W}/door_walkway_occupancy/config",
        f"homeassistant/sensor/{W}/door_walkway_count/config",
        f"homeassistant/sensor/{W}/door_middle_in/config",
        f"homeassistant/sensor/{W}/door_middle_out/config",
        f"homeassistant/camera/{W}/door_last_event/config",
    }
    devices = {json.dumps(c["device"], sort_keys=True) for c in configs.values()}
    assert len(devices) == 1
    device = next(iter(configs.values()))["device"]
    assert device["identifiers"] == [f"edgevision_{W}"] and device["model"] == "edgevision watch"
    assert all(c["availability_topic"] == f"{BASE}/availability" for c in configs.values())
    assert len({c["unique_id"] for c in configs.values()}) == len(configs)
    occupancy = configs[f"homeassistant/binary_sensor/{W}/door_walkway_occupancy/config"]
    assert occupancy["device_class"] == "occupancy" and occupancy["state_topic"] == f"{BASE}/door/walkway/occupancy"
    line_in = configs[f"homeassistant/sensor/{W}/door_middle_in/config"]
    assert line_in["state_class"] == "total_increasing" and line_in["state_topic"] == f"{BASE}/door/middle/in"
    assert configs[f"homeassistant/camera/{W}/door_last_event/config"]["topic"] == f"{BASE}/door/snapshot"
    problem = configs[f"homeassistant/binary_sensor/{W}/storage_problem/config"]
    assert (problem["device_class"], problem["state_topic"], problem["name"]) == (
        "problem",
        f"{BASE}/storage",
        "storage problem",
    )
    free = configs[f"homeassistant/sensor/{W}/storage_free/config"]
    assert (free["unit_of_measurement"], free["state_topic"]) == ("GB", f"{BASE}/storage")


def test_a_broker_outage_mid_run_loses_no_event_and_keeps_their_order(tmp_path, clip, predictor):
    broker = Broker(tmp_path / "broker", persistence=True).start()  # the subscriber's session outlives the restart
    config = watch_config(tmp_path, clip, broker.port)
    outage: dict[str, list[str]] = {}

    def on_event(camera, event, frame) -> None:  # on the inference thread: the run waits while the broker changes
        count = outage.setdefault("count", [])
        count.append(event.type)
        if len(count) == 2:
            broker.stop()
        elif len(count) == 6:
            outage["waiting"] = unsent_ids(config.storage.path)
            broker.start()

    subscriber = Subscriber(broker.port, f"{BASE}/+/events", client_id="outage", clean=False)
    link = MqttLink(config)
    try:
        service = run_clip(config, predictor, link, on_event=on_event)
        expected = stored_ids(service.store)
        service.stop()  # the link goes on: it reads the outbox on a connection of its own
        poll(lambda: set(event_ids(subscriber.events())) >= set(expected), timeout=40, every=0.1)
        link.stop()
        time.sleep(0.3)
        assert len(outage["count"]) >= 8 and len(outage["waiting"]) >= 2, outage  # events did wait in the outbox
        received = subscriber.events()
        ids = event_ids(received)
        assert list(dict.fromkeys(ids)) == expected  # every event once, in the order it was stored
        repeats = [m for k, m in enumerate(received) if ids[k] in ids[:k]]
        assert all(m.dup for m in repeats)  # the broker's own redelivery, never a second send by the watcher
        assert unsent_ids(config.storage.path) == []
    finally:
        subscriber.close()
        broker.stop()


def test_an_event_is_marked_sent_only_once_the_broker_acknowledged_it(tmp_path, clip, broker):
    live = Subscriber(broker.port, f"{BASE}/+/events")
    config = watch_config(tmp_path, clip, broker.port)
    link = MqttLink(config)
    link.start()
    try:
        poll(lambda: retained(broker.port, f"{BASE}/availability"), timeout=10, every=0.1)  # connected
        broker.process.send_signal(signal.SIGSTOP)  # the connection stays, but no acknowledgement comes back
        with EventStore(config.storage.path) as store:
            store.add_event("door", "enter", zone="walkway", track_id=1, outbox=link.message)
        time.sleep(1.5)  # the publisher looks at the outbox every second: the message went out meanwhile
        assert unsent_ids(config.storage.path) == [f"{W}:1"]
        broker.process.send_signal(signal.SIGCONT)
        poll(lambda: unsent_ids(config.storage.path) == [], timeout=10, every=0.05)
        poll(lambda: event_ids(live.events()) == [f"{W}:1"], timeout=10, every=0.05)
    finally:
        link.stop()
        live.close()


def test_a_reload_keeps_the_connection_and_empties_what_the_config_lost(tmp_path, clip, predictor, broker):
    live = Subscriber(broker.port, f"{BASE}/availability")
    config = watch_config(tmp_path, clip, broker.port)
    running = _Running(config, lambda model: predictor)
    try:
        poll(lambda: live.payloads(f"{BASE}/availability") == [b"online"], timeout=10, every=0.05)
        camera = {"source": str(clip), "zones": {"porch": WALKWAY}}  # walkway and middle are gone
        values = config.model_dump(mode="json")
        running.reload(watch_config_from_dict({**values, "cameras": {"door": camera}}, base=tmp_path))
        discovery = f"homeassistant/+/{W}/+/config"
        poll(lambda: any("porch" in t for t in retained(broker.port, discovery)), timeout=10, every=0.1)
        kept = retained(broker.port)
        assert not [t for t in kept if "walkway" in t or "middle" in t], kept.keys()
        assert live.payloads(f"{BASE}/availability") == [b"online"]  # the same connection: never offline

        renamed = {**values, "mqtt": {**values["mqtt"], "client_id": "barn"}, "cameras": {"door": camera}}
        running.reload(watch_config_from_dict(renamed, base=tmp_path))
        poll(lambda: retained(broker.port, "edgevision/barn/availability"), timeout=10, every=0.1)
        assert live.payloads(f"{BASE}/availability") == [b"online", b"offline"]
    finally:
        running.stop()
        live.close()
    assert retained(broker.port, "edgevision/barn/availability") == {"edgevision/barn/availability": b"offline"}


def test_a_restarted_watcher_empties_the_entities_its_config_lost(tmp_path, clip, broker):
    two = watch_config(tmp_path, clip, broker.port)
    first = MqttLink(two)
    first.start()
    poll(lambda: len(retained(broker.port, f"homeassistant/+/{W}/+/config")) == 7, timeout=10, every=0.1)
    first.stop()
    values = two.model_dump(mode="json")
    values["cameras"]["door"]["lines"] = {}
    second = MqttLink(watch_config_from_dict(values, base=tmp_path))
    second.start()  # it learns the old entities from the broker's retained configs
    try:
        poll(lambda: len(retained(broker.port, f"homeassistant/+/{W}/+/config")) == 5, timeout=10, every=0.1)
    finally:
        second.stop()
    assert not [t for t in retained(broker.port) if "middle" in t]


def test_username_and_password(tmp_path, clip, caplog):
    passwords = tmp_path / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "cam", "s3cret"], check=True)
    broker = Broker(tmp_path / "broker", f"password_file {passwords}", "allow_anonymous false").start()
    try:
        live = Subscriber(broker.port, f"{BASE}/availability", auth=("cam", "s3cret"))
        good = MqttLink(watch_config(tmp_path, clip, broker.port, username="cam", password="s3cret"))
        good.start()
        poll(lambda: live.payloads(f"{BASE}/availability") == [b"online"], timeout=10, every=0.05)
        good.stop()
        live.close()

        caplog.set_level(logging.INFO, logger="edgevision.watch.mqtt")
        bad = MqttLink(watch_config(tmp_path, clip, broker.port, username="cam", password="wrong"))
        bad.start()
        poll(lambda: broker.log.read_text().count("not authorised") >= 2, timeout=10, every=0.1)  # it tried again
        bad.stop()
    finally:
        broker.stop()
    refusals = [r.getMessage() for r in caplog.records if "refused the connection" in r.getMessage()]
    assert refusals == [
        f"mqtt: the broker at 127.0.0.1:{broker.port} refused the connection (Not authorized), retrying; "
        "check mqtt.username and mqtt.password"
    ]


def make_certificates(folder: Path) -> dict[str, Path]:
    """A CA made here and a server certificate it signed for 127.0.0.1 (not for localhost)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (apt-get install openssl): the TLS test makes its certificates with it")
    files = {name: folder / f"{name}.pem" for name in ("ca", "ca-key", "server", "server-key", "request")}
    extensions = folder / "server.ext"
    extensions.write_text("subjectAltName = IP:127.0.0.1\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for command in (
        ["req", "-x509", *ec, "-keyout", files["ca-key"], "-out", files["ca"], "-days", "2", "-subj", "/CN=test CA"],
        ["req", *ec, "-keyout", files["server-key"], "-out", files["request"], "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", files["request"], "-CA", files["ca"], "-CAkey", files["ca-key"], "-CAcreateserial"]
        + ["-out", files["server"], "-days", "2", "-extfile", extensions],
    ):
        subprocess.run(["openssl", *map(str, command)], check=True, capture_output=True)
    return files


def test_tls_with_a_ca_made_here(tmp_path, clip, caplog):
    files = make_certificates(tmp_path)
    tls = [f"cafile {files['ca']}", f"certfile {files['server']}", f"keyfile {files['server-key']}"]
    broker = Broker(tmp_path / "broker", *tls).start()
    caplog.set_level(logging.INFO, logger="edgevision.watch.mqtt")
    try:
        live = Subscriber(broker.port, f"{BASE}/availability", ca=files["ca"])
        trusting = MqttLink(watch_config(tmp_path, clip, broker.port, tls={"ca_certs": str(files["ca"])}))
        trusting.start()
        poll(lambda: live.payloads(f"{BASE}/availability") == [b"online"], timeout=10, every=0.05)
        trusting.stop()

        system = MqttLink(watch_config(tmp_path, clip, broker.port, tls=True))  # the system's CAs do not know it
        system.start()
        poll(lambda: any("certificate verify failed" in r.getMessage() for r in caplog.records), timeout=10)
        system.stop()

        named = {"host": "localhost", "tls": {"ca_certs": str(files["ca"]), "insecure": True}}
        other_name = MqttLink(watch_config(tmp_path, clip, broker.port, **named))  # made for 127.0.0.1, not localhost
        other_name.start()
        poll(lambda: live.payloads(f"{BASE}/availability")[-1:] == [b"online"], timeout=10, every=0.05)
        other_name.stop()
        live.close()
    finally:
        broker.stop()
    failures = [r.getMessage() for r in caplog.records if "verify failed" in r.getMessage()]
    assert len(failures) == 1 and "check mqtt.tls" in failures[0], failures


# ---------------------------------------------------------------------------------------------- a real process


def test_kill_9_while_the_broker_is_down_keeps_the_events_for_after_the_restart(tmp_path, samples_cache):
    looping = write_first_frames(samples_cache["vtest.avi"], tmp_path / "walkway.avi", 40)
    broker = Broker(tmp_path / "broker").start()
    values = watch_config(tmp_path, looping, broker.port).model_dump(mode="json")
    values["cameras"]["door"]["loop"] = True
    values["web"] = {"bind": "127.0.0.1", "port": free_port()}
    config = tmp_path / "watch.yaml"
    config.write_text(json.dumps(values))  # JSON is YAML
    data, log = tmp_path / "data", tmp_path / "stderr.txt"
    live = Subscriber(broker.port, f"{BASE}/#")
    processes = []
    try:
        processes.append(start_watch(config, log))
        poll(lambda: live.events(), timeout=60, every=0.1)
        processes[-1].kill()  # no handler runs: the broker says "offline" for it, its last will
        poll(lambda: live.payloads(f"{BASE}/availability")[-1:] == [b"offline"], timeout=10, every=0.05)
        assert live.payloads(f"{BASE}/availability") == [b"online", b"offline"]

        broker.stop()
        left = unsent_ids(data)  # events the kill cut off before the broker acknowledged them
        processes.append(start_watch(config, log))  # the broker is down: it watches all the same
        poll(lambda: len(unsent_ids(data)) >= len(left) + 3 and "cannot reach" in log.read_text(), timeout=60)
        time.sleep(1.5)  # paho tries again after 1 s, then 2 s
        processes[-1].kill()
        waiting = unsent_ids(data)
        assert waiting[: len(left)] == left
        assert log.read_text().count("cannot reach the broker") == 1  # one line, however many retries

        live.subscribed.clear()
        broker.start()  # a new broker: nothing retained, no sessions
        poll(live.subscribed.is_set, timeout=10, every=0.05)
        seen = len(live.events())  # the kill may have come between the broker's acknowledgement and its mark:
        processes.append(start_watch(config, log))  # that event is sent again, with the same id
        poll(lambda: len(live.events()) >= seen + len(waiting), timeout=60, every=0.1)
        after_restart = event_ids(live.events()[seen:])
        assert after_restart[: len(waiting)] == waiting  # first, in the order they were stored
        assert len(set(after_restart)) == len(after_restart)
        processes[-1].send_signal(signal.SIGTERM)
        assert processes[-1].wait(timeout=5) == 0, log.read_text()
        poll(lambda: len(live.payloads(f"{BASE}/availability")) == 4, timeout=5, every=0.05)
        assert live.payloads(f"{BASE}/availability") == [b"online", b"offline", b"online", b"offline"]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        live.close()
        broker.stop()
    assert "Traceback" not in log.read_text()


# ---------------------------------------------------------------------------------------------- no broker


def test_the_outbox_is_written_with_its_event_and_only_when_asked(tmp_path):
    messages = EventMessages(Topics("edgevision", W))
    with EventStore(tmp_path) as store:
        quiet = store.add_event("door", "enter", zone="walkway", track_id=1, label="person")
        queued = store.add_event("door", "cross", zone="middle", direction="in", track_id=2, outbox=messages)
        with pytest.raises(TypeError):  # a message that cannot be made: the event is not stored either
            store.add_event("door", "enter", outbox=lambda event: None)
        assert [e.id for e in store.events()] == [queued, quiet]
        assert store.unsent() == 1  # what the service reports as mqtt_unsent
    outbox = Outbox(tmp_path)
    try:
        message = outbox.first_unsent()
        assert (message.event_id, message.topic, outbox.unsent()) == (queued, f"{BASE}/door/events", 1)
        payload = json.loads(message.payload)
        assert (payload["id"], payload["direction"], payload["track_id"]) == (f"{W}:{queued}", "in", 2)
        outbox.mark_sent(message.id)
        assert outbox.first_unsent() is None and outbox.unsent() == 0
    finally:
        outbox.close()
    with EventStore(tmp_path) as store:
        assert store.unsent() == 0


MQTT_BAD = [
    ({"port": 1883}, "mqtt.host: is required"),
    ({"host": "a broker"}, "mqtt.host: expected an IP address or a host name"),
    ({"host": "b", "port": 70000}, "mqtt.port: must be less than or equal to 65535"),
    ({"host": "b", "password": "x"}, "mqtt: a password needs its username"),
    ({"host": "b", "topic_prefix": "cams/#"}, "mqtt.topic_prefix: expected topic levels"),
    ({"host": "b", "topic_prefix": "/cams"}, "mqtt.topic_prefix: expected topic levels"),
    ({"host": "b", "client_id": "my box"}, "mqtt.client_id: a name must start with a letter or digit"),
    ({"host": "b", "tls": "on"}, "mqtt.tls: expected true, false or a mapping"),
    ({"host": "b", "tls": {"ca_certs": "missing.pem"}}, "mqtt.tls.ca_certs: the file"),
    ({"host": "b", "tls": {"keyfile": "watch.yaml"}}, "mqtt.tls: keyfile is the key of certfile"),
    ({"host": "b", "tls": {"ca_certs": "watch.yaml"}}, "mqtt.tls.ca_certs: "),
    ({"host": "b", "keepalive": 1}, "mqtt.keepalive: must be greater than or equal to 5"),
    ({"host": "b", "discovery": {"prefix": ""}}, "mqtt.discovery.prefix: "),
    ({"host": "b", "discovery": {"enable": True}}, "mqtt.discovery: unknown key 'enable'"),
    ({"host": "b", "qos": 2}, "mqtt: unknown key 'qos'; the known keys are host, port"),
]


@pytest.mark.parametrize(("settings", "expected"), MQTT_BAD, ids=[e for _, e in MQTT_BAD])
def test_each_mqtt_mistake_is_one_sentence_naming_its_key(tmp_path, settings, expected):
    (tmp_path / "watch.yaml").write_text("not a certificate\n")
    with pytest.raises(WatchConfigError) as caught:
        watch_config_from_dict({"cameras": {"door": {"source": "0"}}, "mqtt": settings}, base=tmp_path)
    assert len(caught.value.problems) == 1 and caught.value.problems[0].startswith(expected), caught.value.problems


def test_mqtt_defaults_and_a_hidden_password(tmp_path):
    absent = watch_config_from_dict({"cameras": {"door": {"source": "0"}}}, base=tmp_path)
    assert absent.mqtt is None
    values = {
        "cameras": {"door": {"source": "0"}},
        "mqtt": {"host": "broker.lan", "username": "u", "password": "hunter2"},
    }
    config = watch_config_from_dict(values, base=tmp_path)
    settings = config.mqtt
    assert (settings.port, settings.topic_prefix, settings.keepalive, settings.tls) == (1883, "edgevision", 60, None)
    assert (settings.discovery.enabled, settings.discovery.prefix) == (True, "homeassistant")
    assert settings.client_id is None and settings.watcher == host_name()  # the host name, cut to a plain name
    assert SAFE_NAME.fullmatch(settings.watcher)
    summary = "\n".join(config.summary_lines())
    assert "u:***@broker.lan:1883" in summary and "hunter2" not in summary
    with_tls = watch_config_from_dict({**values, "mqtt": {"host": "b", "tls": True}}, base=tmp_path)
    assert with_tls.mqtt.tls is not None and with_tls.mqtt.tls.ca_certs is None  # the system's authorities
