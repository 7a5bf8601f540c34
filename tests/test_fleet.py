"""``edgevision dashboard`` against a real mosquitto: several watchers on one broker, one page for all.

Watchers publish through the watch service's own :class:`MqttLink` (one of them on a real
clip, the others with events written to their outbox here); a watcher killed with
``kill -9`` is said offline by its last will. Nothing is mocked.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import assert_clean_error, headless_chromium, run_cli
from edgevision import api
from edgevision.watch.config import watch_config_from_dict
from edgevision.watch.dashboard import run_dashboard
from edgevision.watch.fleet import FleetStore
from edgevision.watch.mqtt import MqttLink
from edgevision.watch.store import EventStore
from edgevision.watch.topics import Topics, event_payload
from test_watch_mqtt import MIDDLE, WALKWAY, Broker, mqtt, run_clip, watch_config
from test_watch_service import SRC, fetch, fetch_json, free_port, poll

SHOTS = os.environ.get("EDGEVISION_FLEET_SCREENSHOT")  # a path: the browser test saves the page there


@pytest.fixture
def broker(tmp_path):
    broker = Broker(tmp_path / "broker").start()
    yield broker
    broker.stop()


class Dashboard:
    """``run_dashboard`` in a thread of this process, on a free port; ``stop()`` ends it."""

    def __init__(self, folder: Path, port: int, *, client_id: str = "dash") -> None:
        self.web_port = free_port()
        self.config = api.dashboard_config(
            f"127.0.0.1:{port}",
            mqtt={"client_id": client_id},
            web={"port": self.web_port},
            storage={"path": str(folder / "fleet")},
        )
        self.url = f"http://127.0.0.1:{self.web_port}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=run_dashboard, args=(self.config,), kwargs={"stop": self._stop})
        self._thread.start()
        poll(lambda: self.fleet()["broker"]["state"] == "connected", timeout=10, every=0.05)

    def fleet(self) -> dict:
        return fetch_json(f"{self.url}/api/fleet") or {"broker": {"state": "starting"}, "watchers": []}

    def watcher(self, name: str) -> dict | None:
        return next((w for w in self.fleet()["watchers"] if w["name"] == name), None)

    def events(self, **query) -> list[dict]:
        params = "&".join(f"{k}={v}" for k, v in {"limit": 1000, **query}.items())
        return fetch_json(f"{self.url}/api/events?{params}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        assert not self._thread.is_alive()


def fake_watcher(folder: Path, port: int, name: str) -> tuple[MqttLink, EventStore]:
    """A watcher that publishes what is written to its outbox: MqttLink started, its store open."""
    video = folder / "unused.avi"  # the config wants a video file; nothing reads it
    video.touch()
    camera = {"source": str(video), "zones": {"walkway": WALKWAY}, "lines": {"middle": MIDDLE}}
    values = {
        "storage": {"path": str(folder / name)},
        "cameras": {"door": camera},
        "mqtt": {"host": "127.0.0.1", "port": port, "client_id": name},
    }
    link = MqttLink(watch_config_from_dict(values, base=folder))
    store = EventStore(link.folder)
    link.start()
    return link, store


def jpeg(shade: int) -> bytes:
    return cv2.imencode(".jpg", np.full((48, 64, 3), shade, np.uint8))[1].tobytes()


def publish_events(link: MqttLink, store: EventStore, count: int, *, occupancy: int, crossings: tuple[int, int]):
    for i in range(count):
        kind = "cross" if i % 2 else "enter"
        event_id = store.add_event("door", kind, zone="walkway", track_id=i, outbox=link.message)
        link.stored("door", event_id, jpeg(40 * (i + 1)))
    link.state("door", {"walkway": occupancy}, {"middle": {"in": crossings[0], "out": crossings[1]}})


KILLABLE = """
import sys, time
sys.path.insert(0, sys.argv[4])
from pathlib import Path
from test_fleet import fake_watcher, publish_events
link, store = fake_watcher(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
publish_events(link, store, 2, occupancy=1, crossings=(0, 1))
time.sleep(600)
"""


def killable_watcher(folder: Path, port: int, name: str) -> subprocess.Popen:
    """A fake watcher in a process of its own, to be killed with SIGKILL (its will then speaks)."""
    tests = str(Path(__file__).resolve().parent)
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{tests}"}
    return subprocess.Popen([sys.executable, "-c", KILLABLE, str(folder), str(port), name, tests], env=env)


def republish(port: int, topic: str, payload: str) -> None:
    """Send ``payload`` once more, as a QoS 1 redelivery would."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="repeater")
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.publish(topic, payload, qos=1).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


# ---------------------------------------------------------------------------------------------- the API


def test_two_watchers_each_event_once_their_counts_and_a_last_will(tmp_path, broker):
    dashboard = Dashboard(tmp_path, broker.port)
    yard, yard_store = fake_watcher(tmp_path, broker.port, "yard")
    barn = killable_watcher(tmp_path, broker.port, "barn")
    try:
        publish_events(yard, yard_store, 3, occupancy=2, crossings=(4, 1))
        poll(lambda: len(dashboard.events()) == 5, timeout=15, every=0.1)
        first = yard_store.events(limit=10)[-1]
        republish(broker.port, Topics("edgevision", "yard").events("door"), json.dumps(event_payload(first, "yard")))
        time.sleep(0.5)
        events = dashboard.events()
        assert sorted(e["id"] for e in events) == ["barn:1", "barn:2", "yard:1", "yard:2", "yard:3"]
        assert [e["time"] for e in events] == sorted((e["time"] for e in events), reverse=True)  # newest first
        assert [e["id"] for e in dashboard.events(watcher="yard", type="cross")] == ["yard:2"]

        yard_state = poll(lambda: dashboard.watcher("yard"), timeout=5, every=0.05)
        assert yard_state["state"] == "online" and yard_state["events"] == 3 and yard_state["last_seen"]
        camera = yard_state["cameras"][0]
        assert camera["name"] == "door" and camera["occupancy"] == {"walkway": 2}
        assert camera["lines"] == {"middle": {"in": 4, "out": 1}}
        status, snapshot = fetch(dashboard.url + camera["snapshot"])
        assert status == 200 and snapshot == jpeg(120)  # the latest of the three
        assert poll(lambda: dashboard.watcher("barn"), timeout=5, every=0.05)["state"] == "online"
        assert dashboard.watcher("barn")["storage"] is None  # said nothing of it yet

        yard.storage("the disk of /data is full", 120_000_000, 3)  # its store refuses writes
        full = poll(lambda: dashboard.watcher("yard")["storage"], timeout=5, every=0.05)
        assert full == {"ok": False, "problem": "the disk of /data is full", "free_gb": 0.12, "events_not_stored": 3}

        barn.kill()  # no clean stop: the broker says the will
        poll(lambda: dashboard.watcher("barn")["state"] == "offline", timeout=10, every=0.1)
        assert dashboard.watcher("yard")["state"] == "online"
        assert dashboard.watcher("barn")["cameras"][0]["lines"] == {"middle": {"in": 0, "out": 1}}
    finally:
        barn.kill()
        yard.stop()
        yard_store.close()
        dashboard.stop()


def test_events_sent_while_the_dashboard_was_away_come_when_it_is_back(tmp_path, broker):
    Dashboard(tmp_path, broker.port).stop()  # its session (subscriptions, client id) stays with the broker
    yard, store = fake_watcher(tmp_path, broker.port, "yard")
    try:
        publish_events(yard, store, 2, occupancy=0, crossings=(1, 0))
        poll(lambda: not yard._outbox.unsent(), timeout=10, every=0.05)  # the broker has them both
        dashboard = Dashboard(tmp_path, broker.port)  # the same client id and store
        try:
            poll(lambda: len(dashboard.events()) == 2, timeout=10, every=0.1)
            assert dashboard.watcher("yard")["cameras"][0]["lines"] == {"middle": {"in": 1, "out": 0}}  # retained
        finally:
            dashboard.stop()
    finally:
        yard.stop()
        store.close()


def test_the_store_keeps_each_id_once_and_prunes_the_oldest(tmp_path):
    store = FleetStore(tmp_path, retain_days=1, max_events=100)
    now = time.time()
    event = {"id": "a:1", "type": "enter", "time": now}
    assert store.add("a", "door", event) and not store.add("a", "door", event)
    store.add("a", "door", {"id": "a:old", "type": "enter", "time": now - 2 * 86400})
    for i in range(120):
        store.add("b", "gate", {"id": f"b:{i}", "type": "cross", "time": now - 200 + i})
    assert store.prune() == 1 + 21  # past a day, then beyond 100 events
    assert len(store.events(limit=1000)) == 100 and store.events(limit=1)[0]["id"] == "a:1"  # the newest
    assert store.counts() == {("a", "door"): 1, ("b", "gate"): 99}
    assert store.events(limit=1000)[-1]["id"] == "b:21"
    store.close()


# ---------------------------------------------------------------------------------------------- real events, the page


def test_real_watch_events_and_the_page_in_chromium(tmp_path, broker, clip, predictor):
    dashboard = Dashboard(tmp_path, broker.port)
    yard, yard_store = fake_watcher(tmp_path, broker.port, "yard")
    config = watch_config(tmp_path, clip, broker.port)  # the watcher "shed" on a real clip
    link = MqttLink(config)
    service = run_clip(config, predictor, link)
    browser = None
    try:
        publish_events(yard, yard_store, 2, occupancy=1, crossings=(2, 0))
        stored = sorted(f"shed:{e.id}" for e in service.store.events(limit=1000))
        counts = service.cameras_status()[0]["line_counts"]["middle"]
        poll(lambda: len(dashboard.events(watcher="shed")) == len(stored), timeout=20, every=0.1)
        assert len(stored) >= 3 and sorted(e["id"] for e in dashboard.events(watcher="shed")) == stored
        shed = poll(lambda: (w := dashboard.watcher("shed")) and w["cameras"][0]["lines"].get("middle"), timeout=10)
        assert shed == {"in": counts["in"], "out": counts["out"]}

        browser = headless_chromium(tmp_path / "chromium", size="1280,1000")
        browser.get(dashboard.url + "/")

        # The page redraws its cards and events on every message, so each read is one script
        # run in the page: elements found in one call and read in another can be gone between.
        def cards() -> dict[str, str]:
            return browser.execute_script(
                "return Object.fromEntries([...document.querySelectorAll('.watcher')]"
                ".map(c => [c.dataset.watcher, c.dataset.state]))"
            )

        def events() -> list[str]:
            return browser.execute_script(
                "return [...document.querySelectorAll('#event-list .event')].map(e => e.dataset.id)"
            )

        def text(selector: str) -> str | None:
            return browser.execute_script(
                "const e = document.querySelector(arguments[0]); return e && e.innerText", selector
            )

        poll(lambda: cards() == {"shed": "online", "yard": "online"}, timeout=15, every=0.2)
        poll(lambda: len(events()) == len(stored) + 2, timeout=10)
        assert set(events()) == {*stored, "yard:1", "yard:2"}
        chips = text('.watcher[data-watcher="yard"] .chips')
        assert "walkway: 1" in chips and "middle: 2 in, 0 out" in chips
        assert text("#broker").startswith("broker 127.0.0.1:")
        assert text('#event-list .event[data-id="yard:2"] .where') == "yard / door"
        poll(lambda: text('.watcher[data-watcher="shed"] .storage-free'), timeout=10, every=0.2)  # its disk's room
        assert text('.watcher[data-watcher="shed"] .storage-free').endswith(" GB free")
        yard.storage("the disk of /data is full", 0, 1)
        poll(lambda: text('.watcher[data-watcher="yard"] .storage-problem') == "storage full", timeout=10, every=0.2)
        if SHOTS:
            browser.save_screenshot(SHOTS)
        yard.stop()  # a clean stop says offline
        poll(lambda: cards() == {"shed": "online", "yard": "offline"}, timeout=10, every=0.2)
        assert text('.watcher[data-watcher="yard"] .badge') == "offline"
        assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    finally:
        if browser is not None:
            browser.quit()
        service.stop()
        link.stop()
        yard.stop()
        yard_store.close()
        dashboard.stop()


# ---------------------------------------------------------------------------------------------- the command


def test_a_page_open_to_other_machines_needs_a_login(tmp_path):
    done = run_cli("dashboard", "--mqtt", "127.0.0.1", "--bind", "0.0.0.0", "--data", tmp_path)
    assert_clean_error(done, "--bind 0.0.0.0 opens the dashboard to other machines", "--token")
    done = run_cli("dashboard", "--mqtt", "broker lan:x", "--data", tmp_path)
    assert_clean_error(done, "--mqtt: expected HOST or HOST:PORT")


def test_a_broker_that_is_down_is_one_sentence_and_sigterm_ends_it(tmp_path):
    web, down = free_port(), free_port()
    log = tmp_path / "stderr"
    with open(log, "w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "edgevision", "dashboard", "--mqtt", f"127.0.0.1:{down}", "--port", str(web)],
            cwd=tmp_path,
            stderr=err,
            env={**os.environ, "PYTHONPATH": str(SRC)},
        )
    try:
        url = f"http://127.0.0.1:{web}/api/fleet"

        def broker() -> dict | None:
            return (fetch_json(url) or {}).get("broker")

        state = poll(lambda: (b := broker()) and b["state"] == "unreachable" and b, timeout=20, every=0.2)
        assert state["detail"].startswith(f"broker unreachable: cannot reach 127.0.0.1:{down} (Connection refused)")
        time.sleep(4)  # paho tried again meanwhile (after 1 s, then 2 s): still one line
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        process.wait(10)
        assert time.monotonic() - started < 5
    finally:
        process.kill()
    text = log.read_text()
    assert "Traceback" not in text
    assert text.count("broker unreachable") == 1, text
