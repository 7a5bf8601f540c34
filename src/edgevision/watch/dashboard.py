"""``edgevision dashboard``: the fleet page and its JSON API, served until SIGTERM or Ctrl-C.

The page (``ui/fleet.html``) and the API read a :class:`~edgevision.watch.fleet.Fleet`; who
may read is decided by :mod:`edgevision.watch.access`, as for the watch page (without
``auth``, loopback only). The dashboard writes nothing but its own event store.

>>> run_dashboard(config)      # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Response

from edgevision.signals import stop_on_signals
from edgevision.watch.access import Access
from edgevision.watch.auth import SESSIONS_FILE
from edgevision.watch.config import AuthConfig, DashboardConfig
from edgevision.watch.fleet import Fleet, FleetLink, FleetStore
from edgevision.watch.http import AppServer, new_app, ui_routes

logger = logging.getLogger(__name__)

PRUNE_S = 3600.0  # the event store drops old events at least this often
MAX_LIMIT = 1000


def make_fleet_app(fleet: Fleet, *, auth: AuthConfig | None = None, sessions: Path | None = None) -> FastAPI:
    """The FastAPI application of the fleet page: ``/api/fleet``, ``/api/events`` and the latest snapshots;
    logins are kept in ``sessions`` across restarts (None: in memory)."""
    app = new_app("edgevision dashboard")
    access = Access(auth, sessions=sessions)

    app.include_router(access.router())
    ui_routes(app, page="fleet.html")
    reader = Depends(access.reader)

    @app.get("/api/health")
    def health() -> dict:
        return {"status": "ok", "broker": fleet.broker.state}

    @app.get("/api/fleet", dependencies=[reader])
    def overview() -> dict:
        return fleet.overview()

    @app.get("/api/events", dependencies=[reader])
    def events(
        watcher: str | None = None,
        camera: str | None = None,
        type: str | None = None,
        before: float | None = None,
        limit: int = 100,
    ) -> list[dict]:
        limit = max(1, min(limit, MAX_LIMIT))
        return fleet.store.events(watcher=watcher, camera=camera, type=type, before=before, limit=limit)

    @app.get("/api/watchers/{watcher}/cameras/{camera}/snapshot.jpg", dependencies=[reader])
    def snapshot(watcher: str, camera: str) -> Response:
        jpeg = fleet.snapshot(watcher, camera)
        if jpeg is None:
            raise HTTPException(404, f"there is no snapshot of {watcher}/{camera}")
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    return app


class FleetServer(AppServer):
    """uvicorn serving :func:`make_fleet_app` from a thread of its own."""

    port_option = "--port"

    def __init__(
        self, fleet: Fleet, *, bind: str, port: int, auth: AuthConfig | None = None, sessions: Path | None = None
    ) -> None:
        super().__init__(bind=bind, port=port)
        self.fleet, self.auth, self.sessions = fleet, auth, sessions

    def app(self) -> FastAPI:
        return make_fleet_app(self.fleet, auth=self.auth, sessions=self.sessions)


def run_dashboard(config: DashboardConfig, *, stop: threading.Event | None = None) -> None:
    """Serve the fleet page of ``config`` until SIGTERM, Ctrl-C or ``stop`` is set; ends within about 2 s."""
    storage, mqtt = config.storage, config.mqtt
    store = FleetStore(storage.path, retain_days=storage.retain_days, max_events=storage.max_events)
    fleet = Fleet(store, prefix=mqtt.topic_prefix, address=f"{mqtt.host}:{mqtt.port}")
    link = FleetLink(mqtt, fleet)
    server = FleetServer(
        fleet, bind=config.web.bind, port=config.web.port, auth=config.web.auth, sessions=storage.path / SESSIONS_FILE
    )
    stop = stop or threading.Event()
    try:
        with stop_on_signals():
            try:
                server.start()  # first: a port in use is said before anything connects
                link.start()
                pruned = time.monotonic()
                while not stop.wait(0.5):  # short waits: a stop signal is acted on at once
                    if time.monotonic() - pruned > PRUNE_S:
                        store.prune()
                        pruned = time.monotonic()
            except KeyboardInterrupt:
                logger.info("stopping")
    finally:
        link.stop(timeout=1.0)
        server.close(timeout=1.0)
        store.close()
