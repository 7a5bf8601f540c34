"""MQTT for ``edgevision watch``: events from the outbox in order, retained states, availability, discovery.

One :class:`MqttLink` per process, kept across config reloads while the ``mqtt`` settings
stay the same. paho-mqtt's network thread connects and reconnects (waiting 1 s, doubling up
to 30 s); one publisher thread of ours sends everything, so the inference thread only puts
what changed into a dict and never waits for the network.

Events leave the store's outbox one at a time, oldest first: the next goes only once the
broker acknowledged the one before (QoS 1), and paho sends an unacknowledged message again
after a reconnect. A broker outage, or a restart of the watcher, delays events but loses
none and keeps their order. QoS 1 may deliver a message twice (when the connection breaks
after the broker took it but before its acknowledgement came back); each event's ``id``
stays the same, so a consumer drops repeats.

>>> link = MqttLink(config)                                   # doctest: +SKIP
>>> service = Service(config, outlet=link); service.start()   # doctest: +SKIP
>>> link.start()                                              # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import sqlite3
import ssl
import sys
import threading
import time
from typing import Any

from edgevision.errors import EdgevisionError, MissingExtraError, cause
from edgevision.watch.config import MqttConfig, WatchConfig
from edgevision.watch.store import Outbox, Outgoing
from edgevision.watch.topics import (
    OFFLINE,
    ONLINE,
    EventMessages,
    discovery_messages,
    retained_topics,
    state_messages,
    storage_message,
    topics_of,
)

logger = logging.getLogger(__name__)

RECONNECT_S = (1, 30)  # paho's back-off between connection attempts: first, longest
POLL_S = 1.0  # the publisher looks at the outbox at least this often, even when nothing woke it
OFFLINE_WAIT_S = 0.5  # at a clean stop, how long "offline" may take to be acknowledged
_AUTH_REASONS = ("Not authorized", "Bad user name or password")


class MqttLink:
    """Publishes one watcher's events, states, availability and Home Assistant discovery to the broker of ``config``.

    It is the service's :class:`~edgevision.watch.service.Outlet`: ``message``, ``stored``
    and ``state`` are called on the inference thread and only note what to send.
    """

    def __init__(self, config: WatchConfig) -> None:
        paho()  # a missing paho-mqtt is said before any model loads
        self.settings: MqttConfig = config.mqtt
        self.topics = topics_of(self.settings)
        self.message = EventMessages(self.topics)  # an event's outbox message: its camera's events topic and JSON
        self.folder = config.storage.path
        self._lock = threading.Lock()  # guards the four below; never held while calling paho
        self._expected: set[str] = set()  # every retained topic of the config
        self._retained: dict[str, str | bytes] = {}  # the latest payload of each retained topic known so far
        self._changed: set[str] = set()  # of those, the topics not yet published since they changed
        self._clear: set[str] = set()  # retained topics to empty: entities gone from the config
        self._acks = threading.Lock()
        self._acked: set[int] = set()  # message ids the broker acknowledged since the last outbox message went
        self._pending: tuple[Outgoing, int] | None = None  # the outbox message out and its message id
        self._wake, self._stop = threading.Event(), threading.Event()
        self._connected = threading.Event()
        self._fresh = False  # a new connection: everything retained goes again
        self._said: dict[str, str] = {}  # the state last logged, of the connection and of the outbox
        self._client: Any = None
        self._outbox: Outbox | None = None
        self._thread: threading.Thread | None = None
        self.configure(config)

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    # -- what the service hands over (on the inference thread: never blocks) ---------------
    def stored(self, camera: str, event_id: int, snapshot: bytes) -> None:
        self._put({self.topics.snapshot(camera): snapshot})  # also wakes the publisher for the outbox

    def state(self, camera: str, occupancy: dict[str, int], line_counts: dict[str, dict[str, int]]) -> None:
        self._put(state_messages(self.topics, camera, occupancy, line_counts))

    def storage(self, problem: str | None, free_bytes: int, not_stored: int) -> None:
        self._put(storage_message(self.topics, problem, free_bytes, not_stored))

    def _put(self, messages: dict[str, str | bytes]) -> None:
        with self._lock:
            for topic, payload in messages.items():
                if topic in self._expected and self._retained.get(topic) != payload:
                    self._retained[topic] = payload
                    self._changed.add(topic)
        self._wake.set()

    def configure(self, config: WatchConfig) -> None:
        """Publish for the cameras of ``config`` from now on; retained topics of entities it no longer has are emptied."""
        discovery = discovery_messages(config)
        expected = retained_topics(config) | set(discovery)
        with self._lock:
            self._clear |= self._expected - expected
            self._expected = expected
            self._retained = {t: p for t, p in self._retained.items() if t in expected and t not in discovery}
            self._retained.update(discovery)
            self._changed = (self._changed & set(self._retained)) | set(discovery)
        self._wake.set()

    # -- life ------------------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background (a broker that is down is retried) and start publishing."""
        self._outbox = Outbox(self.folder)
        self._client = make_client(self.settings, self.topics.availability)
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.on_message = self._on_message
        self._client.connect_async(self.settings.host, self.settings.port, keepalive=self.settings.keepalive)
        self._client.loop_start()
        self._thread = threading.Thread(target=self._run, name="watch-mqtt", daemon=True)
        self._thread.start()

    def stop(self, *, timeout: float = 1.5) -> None:
        """Say ``offline``, disconnect and end both threads within about ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout / 2)
        if self._client is not None:
            self._say_offline(min(OFFLINE_WAIT_S, max(0.0, deadline - time.monotonic())))
            self._client.disconnect()
            ender = threading.Thread(target=self._client.loop_stop, daemon=True)  # joins paho's thread
            ender.start()
            ender.join(max(0.1, deadline - time.monotonic()))
        if self._outbox is not None:
            self._outbox.close()

    def _say_offline(self, wait: float) -> None:
        if not self._connected.is_set():
            return
        info = self._client.publish(self.topics.availability, OFFLINE, qos=1, retain=True)
        with contextlib.suppress(RuntimeError, ValueError):  # the connection went meanwhile: the will says "offline"
            info.wait_for_publish(wait)

    # -- the publisher thread --------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(POLL_S)
            self._wake.clear()
            if not self._connected.is_set() or self._stop.is_set():
                continue
            try:
                self._publish()
                self._said.pop("outbox", None)
            except sqlite3.Error as exc:
                text = f"mqtt: cannot read the outbox in {self.folder} ({cause(exc)}); trying again"
                self._log_once("outbox", "failing", text)

    def _publish(self) -> None:
        if self._fresh:
            self._fresh = False
            self._announce()
        self._publish_retained()
        self._send_outbox()

    def _announce(self) -> None:
        """After each connect: everything retained again (a broker may have lost it), then ``online``."""
        with self._lock:
            self._changed = set(self._retained)
        self._publish_retained()
        self._client.publish(self.topics.availability, ONLINE, qos=1, retain=True)
        waiting = self._outbox.unsent()
        if waiting:
            logger.info("mqtt: sending %d event(s) kept while the broker was away", waiting)

    def _publish_retained(self) -> None:
        """Empty the topics of entities gone (QoS 1), then send the states that changed.

        States go at QoS 0: paho would send an unacknowledged QoS 1 state again after a
        reconnect, possibly after the newer one the announcement sends; a QoS 0 one lost with
        the connection is sent again by that announcement anyway.
        """
        with self._lock:
            cleared, self._clear = sorted(self._clear), set()
            changed = [(topic, self._retained[topic]) for topic in sorted(self._changed)]
            self._changed = set()
        for topic in cleared:
            self._client.publish(topic, b"", qos=1, retain=True)
        for topic, payload in changed:
            self._client.publish(topic, payload, qos=0, retain=True)

    def _send_outbox(self) -> None:
        """The next outbox message once the broker acknowledged the one before (one at a time keeps the order)."""
        if self._pending is not None:
            message, mid = self._pending
            with self._acks:
                if mid not in self._acked:
                    return  # paho sends it again after a reconnect; never a second copy from here
            self._outbox.mark_sent(message.id)
            self._pending = None
        message = self._outbox.first_unsent()
        if message is None:
            return
        with self._acks:
            self._acked.clear()  # message ids wrap at 65535: only acknowledgements from now on count
        info = self._client.publish(message.topic, message.payload, qos=1)
        self._pending = (message, info.mid)

    # -- paho's callbacks (on its network thread) ------------------------------------------
    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            hint = "; check mqtt.username and mqtt.password" if str(reason) in _AUTH_REASONS else ""
            text = f"mqtt: the broker at {self.address} refused the connection ({reason}), retrying{hint}"
            self._log_once("connection", f"refused {reason}", text)
            return
        text = f"mqtt: connected to {self.address} as {self.topics.watcher}"
        self._log_once("connection", "connected", text, logging.INFO)
        discovery = f"{self.settings.discovery.prefix}/+/{self.topics.watcher}/+/config"
        client.subscribe(discovery, qos=1)  # the retained configs of this watcher: any no longer wanted is emptied
        self._fresh = True
        self._connected.set()
        self._wake.set()

    def _on_connect_fail(self, client, userdata) -> None:
        exc = sys.exc_info()[1]  # paho calls this while it handles the connection's OSError
        reason = f" ({reason_of(exc)}), retrying{hint_of(exc)}" if exc is not None else ", retrying"
        text = f"mqtt: cannot reach the broker at {self.address}{reason}"
        self._log_once("connection", f"unreachable {reason}", text)

    def _on_disconnect(self, client, userdata, flags, reason, properties) -> None:
        self._connected.clear()
        if not self._stop.is_set() and self._said.get("connection") == "connected":
            text = f"mqtt: lost the connection to the broker at {self.address}, reconnecting; events wait in the outbox"
            self._log_once("connection", "lost", text)

    def _on_publish(self, client, userdata, mid, reason, properties) -> None:
        with self._acks:  # paho holds its own lock here: take none that is held while calling paho
            self._acked.add(mid)
        self._wake.set()

    def _on_message(self, client, userdata, message) -> None:
        """A retained discovery config of this watcher: emptied, with its state topic, when the config lost it."""
        if not message.retain or not message.payload:
            return  # only the retained messages sent at subscription: the rest is this watcher's own echo
        owned = self._owned_topics(message.payload)
        with self._lock:
            if message.topic in self._expected or owned is None:
                return
            self._clear |= {message.topic, *(owned - self._expected)}
        self._wake.set()

    def _owned_topics(self, payload: bytes) -> set[str] | None:
        """The state topics of a discovery config this watcher made, or None when another made it."""
        try:
            config = json.loads(payload)
        except ValueError:
            return None
        mine = f"edgevision_{self.topics.watcher}_"
        if not isinstance(config, dict) or not str(config.get("unique_id", "")).startswith(mine):
            return None
        return {str(config[key]) for key in ("state_topic", "topic") if key in config}

    def _log_once(self, subject: str, state: str, text: str, level: int = logging.WARNING) -> None:
        """One log line per change of ``subject``'s state (the connection, the outbox), not one per retry."""
        if self._said.get(subject) != state:
            self._said[subject] = state
            logger.log(level, text)


def make_client(settings: MqttConfig, availability: str | None, *, clean_session: bool = True):
    """A paho client with the credentials, TLS and last will of ``settings`` (not connected yet).

    ``availability`` is the topic of the last will (None: no will); ``clean_session=False``
    asks the broker to keep the subscriptions and queue QoS 1 messages while it is away.
    """
    mqtt = paho()
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=settings.watcher,
        clean_session=clean_session,
        protocol=mqtt.MQTTv311,
    )
    if settings.username is not None:
        client.username_pw_set(settings.username, settings.password)
    if settings.tls is not None:
        tls = settings.tls
        try:
            client.tls_set(ca_certs=_text(tls.ca_certs), certfile=_text(tls.certfile), keyfile=_text(tls.keyfile))
        except (ssl.SSLError, OSError) as exc:
            raise EdgevisionError(f"mqtt.tls: cannot use the certificates ({cause(exc)}); check its files.") from None
        client.tls_insecure_set(tls.insecure)
    if availability is not None:
        client.will_set(availability, OFFLINE, qos=1, retain=True)  # the broker says it when the watcher vanishes
    client.reconnect_delay_set(*RECONNECT_S)
    return client


def paho():
    """paho-mqtt's client module (the ``watch`` extra)."""
    try:
        from paho.mqtt import client
    except ImportError:
        raise MissingExtraError("paho-mqtt", "watch") from None
    return client


def reason_of(exc: BaseException) -> str:
    """A connection error in a few words: ``Connection refused``, ``certificate verify failed: ...``."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message.rstrip('.')}"
    return getattr(exc, "strerror", None) or cause(exc)


def hint_of(exc: BaseException) -> str:
    """What to check for a connection error, as the end of a sentence."""
    if isinstance(exc, ssl.SSLError):
        return "; check mqtt.tls (ca_certs, or insecure for a certificate made for another host name)"
    if isinstance(exc, socket.gaierror):
        return "; check mqtt.host"
    if isinstance(exc, ConnectionRefusedError):
        return "; is it running, on mqtt.port?"
    return ""


def _text(path) -> str | None:
    return None if path is None else str(path)
