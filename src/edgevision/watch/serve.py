"""``edgevision watch`` in the foreground: the service and its web API until a stop signal; SIGHUP reloads.

SIGTERM and SIGINT stop everything within about five seconds, clips still open written
with the frames they have. SIGHUP reads the config again: a good one replaces the
running service (models already loaded are kept); a bad one is refused with one log line
and the service goes on as it was.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

from edgevision.errors import EdgevisionError
from edgevision.models.base import Predictor
from edgevision.signals import stop_on_signals
from edgevision.watch.config import WatchConfig
from edgevision.watch.http import WebServer
from edgevision.watch.mqtt import MqttLink
from edgevision.watch.service import Loader, Service
from edgevision.zoo.assemble import load_predictor

logger = logging.getLogger(__name__)


class _Running:
    """The service, web server and MQTT link now running, and the models loaded so far (kept across reloads)."""

    def __init__(self, config: WatchConfig, loader: Loader) -> None:
        self.models: dict[str, Predictor] = {}
        self._loader = loader
        self.mqtt = MqttLink(config) if config.mqtt is not None else None
        self.service = self._started(config)
        self.web: WebServer | None = None
        try:
            self._start_mqtt()
        except BaseException:
            self.service.stop(timeout=1.0)
            raise

    def _load_once(self, model: str) -> Predictor:
        if model not in self.models:
            self.models[model] = self._loader(model)
        return self.models[model]

    def _started(self, config: WatchConfig) -> Service:
        service = Service(config, loader=self._load_once, outlet=self.mqtt)
        try:
            service.start()
        except BaseException:
            service.stop(timeout=1.0)
            raise
        return service

    def serve_web(self) -> None:
        web = self.service.config.web
        self.web = WebServer(lambda: self.service, bind=web.bind, port=web.port)
        self.web.start()

    def _start_mqtt(self) -> None:
        if self.mqtt is not None:
            self.mqtt.start()  # after the service, whose store made the outbox; connects in the background

    def reload(self, config: WatchConfig) -> None:
        """Run ``config`` instead; the web server moves only when its address changed, MQTT reconnects only when its settings did."""
        old = self.service
        old.stop()
        same_mqtt = config.mqtt == old.config.mqtt and config.storage.path == old.config.storage.path
        if self.mqtt is not None and same_mqtt:
            self.mqtt.configure(config)
        else:
            self._stop_mqtt()
            self.mqtt = MqttLink(config) if config.mqtt is not None else None
        self.service = self._started(config)
        if not same_mqtt:
            self._start_mqtt()
        if config.web != old.config.web:
            self.web.close()
            self.serve_web()
        logger.info("config reloaded")

    def _stop_mqtt(self, timeout: float = 1.5) -> None:
        if self.mqtt is not None:
            self.mqtt.stop(timeout=timeout)

    def stop(self) -> None:
        """Everything ended within about 4.5 s: the service first, so the web and MQTT tell of the last."""
        self.service.stop(timeout=3.0)
        self._stop_mqtt(timeout=1.0)
        if self.web is not None:
            self.web.close(timeout=0.5)


def serve(config: WatchConfig, *, reread: Callable[[], WatchConfig], loader: Loader | None = None) -> None:
    """Run ``config`` until SIGTERM or SIGINT; on SIGHUP, ``reread()`` gives the config to run instead."""
    hangup = threading.Event()
    previous = _on_hangup(hangup.set)
    try:
        with stop_on_signals():
            running = _Running(config, loader or load_predictor)
            try:
                running.serve_web()
                _wait(running, hangup, reread)
            except KeyboardInterrupt:
                logger.info("stopping")
            finally:
                running.stop()
    finally:
        if previous is not None:
            signal.signal(signal.SIGHUP, previous)


def _wait(running: _Running, hangup: threading.Event, reread: Callable[[], WatchConfig]) -> None:
    while True:
        if hangup.wait(0.5):
            hangup.clear()
            _reload(running, reread)


def _reload(running: _Running, reread: Callable[[], WatchConfig]) -> None:
    try:
        config = reread()
    except EdgevisionError as exc:
        logger.error("the new config was refused, the old one runs on: %s", " ".join(str(exc).split()))
        return
    running.reload(config)


def _on_hangup(handler: Callable[[], None]):
    """Make SIGHUP call ``handler`` (main thread only); the previous handler, or None."""
    if not hasattr(signal, "SIGHUP") or threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGHUP, lambda signum, frame: handler())
