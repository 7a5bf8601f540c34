"""The read-only web API of ``edgevision watch``: cameras, events, snapshots, clips and Prometheus metrics.

FastAPI served by uvicorn on a thread of its own; ``current()`` gives the running
:class:`~edgevision.watch.service.Service`, so a reloaded config is served without a restart.

>>> server = WebServer(lambda: service, bind="127.0.0.1", port=8971)    # doctest: +SKIP
>>> server.start(); server.url                                          # doctest: +SKIP
'http://127.0.0.1:8971/'
"""

from __future__ import annotations

import logging
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from edgevision.errors import EdgevisionError
from edgevision.watch.service import Service
from edgevision.watch.store import StoredEvent

logger = logging.getLogger(__name__)

Current = Callable[[], Service]
PREFIX = "edgevision_watch_"


def event_record(event: StoredEvent) -> dict:
    """The JSON of one event, with the addresses of its snapshot and clip (None when it has none)."""
    base = f"/api/events/{event.id}"
    return {
        "id": event.id,
        "camera": event.camera,
        "type": event.type,
        "time": event.time,
        "zone": event.zone,
        "track_id": event.track_id,
        "label": event.label,
        "score": event.score,
        "box": list(event.box) if event.box else None,
        "direction": event.direction,
        "dwell_seconds": event.dwell_seconds,
        "snapshot": f"{base}/snapshot.jpg" if event.snapshot else None,
        "clip": f"{base}/clip.mp4" if event.clip else None,
    }


RELOADING = "the service is starting or reloading its config"


def serving(current: Current) -> Current:
    """``current`` that answers 503 (try again) while the service reloads its config, instead of failing."""

    def service() -> Service:
        running = current()
        if not running.serving:
            raise HTTPException(503, RELOADING, headers={"Retry-After": "1"})
        return running

    return service


def make_app(current: Current) -> FastAPI:
    """The FastAPI application over the service ``current()`` returns."""
    app = FastAPI(title="edgevision watch", docs_url=None, redoc_url=None, openapi_url=None)
    running, current = current, serving(current)

    @app.exception_handler(sqlite3.ProgrammingError)
    async def stopped_meanwhile(request: Request, exc: sqlite3.ProgrammingError) -> JSONResponse:
        if running().serving:  # not a store closed by a reload under this request: a real error
            raise exc
        return JSONResponse({"detail": RELOADING}, status_code=503, headers={"Retry-After": "1"})

    registry = CollectorRegistry(auto_describe=False)
    registry.register(WatchCollector(current))

    @app.get("/api/health")
    def health() -> dict:
        service = current()
        return {"status": "ok", "cameras": len(service.cameras), "uptime_s": round(time.time() - service.started, 1)}

    @app.get("/api/cameras")
    def cameras() -> list[dict]:
        return current().cameras_status()

    @app.get("/api/events")
    def events(camera: str | None = None, since: float | None = None, type: str | None = None, limit: int = 100):
        found = current().store.events(camera=camera, since=since, type=type, limit=max(1, min(limit, 1000)))
        return [event_record(e) for e in found]

    @app.get("/api/events/{event_id}/snapshot.jpg")
    def snapshot(event_id: int) -> FileResponse:
        return _media(current(), event_id, "snapshot", "image/jpeg")

    @app.get("/api/events/{event_id}/clip.mp4")
    def clip(event_id: int) -> FileResponse:
        return _media(current(), event_id, "clip", "video/mp4")

    @app.get("/api/cameras/{name}/latest.jpg")
    def latest(name: str) -> Response:
        service = current()
        if name not in service.cameras:
            raise HTTPException(404, f"there is no camera {name}")
        jpeg = service.latest_jpeg(name)
        if jpeg is None:
            raise HTTPException(404, f"camera {name} has no frame yet")
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _media(service: Service, event_id: int, kind: str, media_type: str) -> FileResponse:
    event = service.store.event(event_id)
    relative = getattr(event, kind) if event else None
    path = service.store.folder / relative if relative else None
    if path is None or not path.is_file():
        raise HTTPException(404, f"event {event_id} has no {kind}")
    return FileResponse(path, media_type=media_type)


class WatchCollector:
    """Prometheus metrics read from the service at each scrape (nothing to keep in step)."""

    def __init__(self, current: Current) -> None:
        self.current = current

    def collect(self) -> Iterator[Metric]:
        cameras = self.current().cameras_status()
        yield from self._gauges(cameras)
        yield from self._counters(cameras)
        latency = GaugeMetricFamily(f"{PREFIX}inference_ms", "Model time per frame", labels=["camera", "quantile"])
        events = CounterMetricFamily(f"{PREFIX}events", "Events fired", labels=["camera", "rule", "type"])
        for c in cameras:
            for q in ("50", "95"):
                if c[f"inference_ms_p{q}"] is not None:
                    latency.add_metric([c["name"], f"0.{q}"], c[f"inference_ms_p{q}"])
            for e in c["events"]:
                events.add_metric([c["name"], e["rule"], e["type"]], e["count"])
        yield latency
        yield events

    @staticmethod
    def _gauges(cameras: list[dict]) -> Iterator[Metric]:
        for key, doc in [("fps", "Frames captured per second, recently"), ("motion_fraction", "Recent frames moving")]:
            gauge = GaugeMetricFamily(f"{PREFIX}{key}", doc, labels=["camera"])
            for c in cameras:
                gauge.add_metric([c["name"]], c[key])
            yield gauge
        running = GaugeMetricFamily(f"{PREFIX}camera_running", "1 when the camera gives frames", labels=["camera"])
        for c in cameras:
            running.add_metric([c["name"]], float(c["state"] == "running"))
        yield running

    @staticmethod
    def _counters(cameras: list[dict]) -> Iterator[Metric]:
        for key in ("captured_frames", "inferred_frames", "dropped_frames"):
            counter = CounterMetricFamily(f"{PREFIX}{key}", key.replace("_", " ").capitalize(), labels=["camera"])
            for c in cameras:
                counter.add_metric([c["name"]], c[key])
            yield counter


class WebServer:
    """uvicorn serving :func:`make_app` on ``bind``:``port`` from a thread of its own."""

    def __init__(self, current: Current, *, bind: str, port: int) -> None:
        self.current, self.bind, self.port = current, bind, port
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.bind}:{self.port}/"

    def start(self, *, timeout: float = 10.0) -> None:
        """Serve; one sentence when the port is taken. Returns once the server answers."""
        import uvicorn

        sock = _listening_socket(self.bind, self.port)
        config = uvicorn.Config(make_app(self.current), log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        logger.info("web API at %s", self.url)

    def close(self, *, timeout: float = 2.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout)


def _listening_socket(bind: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((bind, port))
    except OSError as exc:
        sock.close()
        raise EdgevisionError(
            f"cannot serve the web API on {bind}:{port} ({exc.strerror}); free the port or set web.port."
        ) from None
    sock.listen(64)
    sock.set_inheritable(True)
    return sock
