"""``edgevision watch`` in the foreground: the service and its web API until a stop signal; SIGHUP reloads.

SIGTERM and SIGINT stop everything within about five seconds, clips still open written
with the frames they have. SIGHUP reads the config again: a good one replaces the
running service (models already loaded are kept); a bad one is refused with one log line
and the service goes on as it was. A save from the web page's editor asks for the same
reload, and waits for its outcome.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path

from edgevision.errors import EdgevisionError
from edgevision.models.base import Predictor
from edgevision.signals import stop_on_signals
from edgevision.watch.auth import SESSIONS_FILE
from edgevision.watch.config import WatchConfig
from edgevision.watch.editor import ConfigEditor
from edgevision.watch.http import WebServer
from edgevision.watch.mqtt import MqttLink
from edgevision.watch.service import Loader, Service
from edgevision.zoo.assemble import close_workers, load_predictor, load_workers

logger = logging.getLogger(__name__)


class _Running:
    """The service, web server and MQTT link now running, and the models loaded so far (kept across reloads)."""

    def __init__(
        self, config: WatchConfig, loader: Loader, *, hangup: threading.Event | None = None, path: Path | None = None
    ) -> None:
        self.models: dict[str, Predictor | Sequence[Predictor]] = {}
        self._loader = loader
        self.mqtt = MqttLink(config) if config.mqtt is not None else None
        self.service = self._started(config)
        self.web: WebServer | None = None
        self.hangup = hangup or threading.Event()  # set by SIGHUP and by request_reload()
        self._waiting: list[Future] = []  # reloads asked for by the web page, resolved after the next one
        self._lock = threading.Lock()
        self.editor = ConfigEditor(path, reload=self.request_reload) if path is not None else None
        try:
            self._start_mqtt()
        except BaseException:
            self.service.stop(timeout=1.0)
            raise

    def _load_once(self, model: str) -> Predictor | Sequence[Predictor]:
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
        web, sessions = self.service.config.web, self.service.config.storage.path / SESSIONS_FILE
        self.web = WebServer(
            lambda: self.service, bind=web.bind, port=web.port, auth=web.auth, editor=self.editor, sessions=sessions
        )
        self.web.start()

    def request_reload(self) -> Future[str | None]:
        """Reload the config file as SIGHUP does; the future gives None, or why the new config was refused."""
        future: Future[str | None] = Future()
        with self._lock:
            self._waiting.append(future)
        self.hangup.set()
        return future

    def take_waiting(self) -> list[Future]:
        """The reload requests made so far (the reload about to start answers them)."""
        with self._lock:
            waiting, self._waiting = self._waiting, []
        return waiting

    def _start_mqtt(self) -> None:
        if self.mqtt is not None:
            self.mqtt.start()  # after the service, whose store made the outbox; connects in the background

    def reload(self, config: WatchConfig) -> None:
        """Run ``config`` instead; the web server restarts only when its settings (address, logins)
        changed, MQTT reconnects only when its settings did."""
        old = self.service
        old.stop()
        if (config.isolate, config.workers) != (old.config.isolate, old.config.workers):
            logger.warning("isolate and workers change at the next start; the models loaded go on as they are")
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
        """Everything ended within about 3 s: the service first, so the web and MQTT tell of the last.

        Unloading the runtimes as the interpreter exits then takes a second or two on a busy
        machine, and SIGTERM must end the process within 5 s: clips still being encoded after
        about 1 s are written in the fast codec (mp4v) instead of H.264, so they are kept.
        """
        self.service.stop(timeout=2.0)
        self._stop_mqtt(timeout=0.8)
        if self.web is not None:
            self.web.close(timeout=0.5)
        for loaded in self.models.values():
            if not isinstance(loaded, Predictor):
                close_workers(loaded)  # worker processes (isolate) end now, not when the interpreter does


def serve(
    config: WatchConfig,
    *,
    reread: Callable[[], WatchConfig],
    loader: Loader | None = None,
    path: Path | None = None,
) -> None:
    """Run ``config`` until SIGTERM or SIGINT; on SIGHUP, ``reread()`` gives the config to run instead.

    ``path``, the config file, lets the web page's editor change it (None: no editing).
    """
    hangup = threading.Event()
    previous = _on_hangup(hangup.set)
    try:
        with stop_on_signals():
            running = _Running(config, loader or model_loader(config), hangup=hangup, path=path)
            try:
                running.serve_web()
                _wait(running, reread)
            except KeyboardInterrupt:
                logger.info("stopping")
            finally:
                running.stop()
    finally:
        if previous is not None:
            signal.signal(signal.SIGHUP, previous)


def model_loader(config: WatchConfig) -> Loader:
    """How the service loads a model: in this process, or (``isolate``) in a worker process of
    its own, which is started again when it dies, so a runtime's crash does not end the service;
    ``workers`` copies (processes) of it, one per inference thread (with ``isolate``, one thread
    per frame slot of each process: one slot is filled while the process infers the other).
    Read at start: a reload keeps the models already loaded."""
    if not config.isolate and config.workers == 1:
        return load_predictor
    return lambda model: load_workers(model, workers=config.workers, isolate=config.isolate)


def _wait(running: _Running, reread: Callable[[], WatchConfig]) -> None:
    while True:
        if running.hangup.wait(0.5):
            running.hangup.clear()
            waiting = running.take_waiting()  # taken before the file is read: later requests wait for the next
            refused = "the reload failed"
            try:
                refused = _reload(running, reread)
            finally:
                for future in waiting:
                    future.set_result(refused)


def _reload(running: _Running, reread: Callable[[], WatchConfig]) -> str | None:
    """Run the config ``reread()`` gives; None, or why it was refused (logged, the old one runs on)."""
    try:
        config = reread()
    except EdgevisionError as exc:
        refused = " ".join(str(exc).split())
        logger.error("the new config was refused, the old one runs on: %s", refused)
        return refused
    running.reload(config)
    return None


def _on_hangup(handler: Callable[[], None]):
    """Make SIGHUP call ``handler`` (main thread only); the previous handler, or None."""
    if not hasattr(signal, "SIGHUP") or threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGHUP, lambda signum, frame: handler())
