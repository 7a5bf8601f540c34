"""The web page and API of ``edgevision watch``: cameras, events, snapshots, clips, counts, metrics, the editor.

FastAPI served by uvicorn on a thread of its own; ``current()`` gives the running
:class:`~edgevision.watch.service.Service`, so a reloaded config is served without a restart.
The page itself is plain HTML, JavaScript and CSS from ``ui/`` (no build step, nothing
from another site). Who may read and write is decided in :mod:`edgevision.watch.access`.

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
from pathlib import Path
from typing import Any

from fastapi import Body, Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from edgevision.errors import EdgevisionError
from edgevision.watch.access import Access, add_security_headers
from edgevision.watch.config import AuthConfig
from edgevision.watch.editor import ConfigEditor, EditRefused, geometry_of
from edgevision.watch.service import Service
from edgevision.watch.store import StoredEvent

logger = logging.getLogger(__name__)

Current = Callable[[], Service]
PREFIX = "edgevision_watch_"
UI = Path(__file__).resolve().parent / "ui"
UI_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
MAX_BUCKETS = 2000


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
        "clip_offset": event.clip_offset if event.clip else None,
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


def new_app(title: str) -> FastAPI:
    """An empty FastAPI application without generated docs, whose every answer carries the security headers."""
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def headers(request: Request, call_next):
        response = await call_next(request)
        add_security_headers(response)
        return response

    return app


def make_app(
    current: Current,
    *,
    auth: AuthConfig | None = None,
    editor: ConfigEditor | None = None,
    sessions: Path | None = None,
) -> FastAPI:
    """The FastAPI application over the service ``current()`` returns; ``editor`` lets the page change zones;
    logins are kept in ``sessions`` across restarts (None: in memory)."""
    app = new_app("edgevision watch")
    running, current = current, serving(current)
    access = Access(auth, sessions=sessions)

    @app.exception_handler(sqlite3.ProgrammingError)
    async def stopped_meanwhile(request: Request, exc: sqlite3.ProgrammingError) -> JSONResponse:
        if running().serving:  # not a store closed by a reload under this request: a real error
            raise exc
        return JSONResponse({"detail": RELOADING}, status_code=503, headers={"Retry-After": "1"})

    app.include_router(access.router())
    ui_routes(app)
    _read_routes(app, current, Depends(access.reader))
    _write_routes(app, current, Depends(access.writer), editor)
    return app


def ui_routes(app: FastAPI, *, page: str = "index.html") -> None:
    """The page ``page`` at ``/`` and the files of ``ui/`` under ``/ui/`` (no data in them, so no login needed)."""
    files = {p.name: p for p in UI.iterdir() if p.suffix in UI_TYPES} if UI.is_dir() else {}

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return _ui_file(files, page)

    @app.get("/ui/{name}", include_in_schema=False)
    def ui_file(name: str) -> FileResponse:
        return _ui_file(files, name)


def _ui_file(files: dict[str, Path], name: str) -> FileResponse:
    if name not in files:
        raise HTTPException(404, f"there is no page file {name}")
    path = files[name]
    return FileResponse(path, media_type=UI_TYPES[path.suffix], headers={"Cache-Control": "no-cache"})


def _read_routes(app: FastAPI, current: Current, reader: Any) -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WatchCollector(current))

    @app.get("/api/health")
    def health() -> dict:
        service = current()
        return {"status": "ok", "cameras": len(service.cameras), "uptime_s": round(time.time() - service.started, 1)}

    @app.get("/api/cameras", dependencies=[reader])
    def cameras() -> list[dict]:
        return current().cameras_status()

    @app.get("/api/service", dependencies=[reader])
    def service_status() -> dict:
        return current().status()

    @app.get("/api/events", dependencies=[reader])
    def events(camera: str | None = None, since: float | None = None, type: str | None = None, limit: int = 100):
        found = current().store.events(camera=camera, since=since, type=type, limit=max(1, min(limit, 1000)))
        return [event_record(e) for e in found]

    @app.get("/api/counts", dependencies=[reader])
    def counts(
        camera: str | None = None,
        type: str | None = "cross",
        bucket: int = 3600,
        since: float | None = None,
        until: float | None = None,
    ) -> dict:
        return counts_record(current(), camera=camera, type=type or None, bucket=bucket, since=since, until=until)

    @app.get("/api/events/{event_id}/snapshot.jpg", dependencies=[reader])
    def snapshot(event_id: int) -> FileResponse:
        return _media(current(), event_id, "snapshot", "image/jpeg")

    @app.get("/api/events/{event_id}/clip.mp4", dependencies=[reader])
    def clip(event_id: int) -> FileResponse:
        return _media(current(), event_id, "clip", "video/mp4")

    @app.get("/api/cameras/{name}/latest.jpg", dependencies=[reader])
    def latest(name: str) -> Response:
        service = current()
        _camera(service, name)
        jpeg = service.latest_jpeg(name)
        if jpeg is None:
            raise HTTPException(404, f"camera {name} has no frame yet")
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.get("/api/cameras/{name}/geometry", dependencies=[reader])
    def geometry(name: str) -> dict:
        service = current()
        _camera(service, name)
        return geometry_of(service.config.cameras[name])

    @app.get("/metrics", dependencies=[reader])
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def _write_routes(app: FastAPI, current: Current, writer: Any, editor: ConfigEditor | None) -> None:
    @app.put("/api/cameras/{name}/geometry", dependencies=[writer])
    def put_geometry(name: str, body: Any = Body(...)) -> dict:
        """Save camera ``name``'s zones and lines to the config file and reload; 422 lists the problems."""
        if editor is None:
            raise HTTPException(403, "this service was started without a config file to edit")
        _camera(current(), name)
        try:
            editor.save_geometry(name, body)
        except EditRefused as exc:
            raise HTTPException(422, {"problems": exc.problems}) from None
        return {"saved": str(editor.path), "backup": str(editor.backup)}


def _camera(service: Service, name: str) -> None:
    if name not in service.cameras:
        raise HTTPException(404, f"there is no camera {name}")


def counts_record(
    service: Service, *, camera: str | None, type: str | None, bucket: int, since: float | None, until: float | None
) -> dict:
    """The JSON of ``/api/counts``: one series of ``[bucket_start, count]`` per camera, zone, type and direction."""
    until = time.time() if until is None else until
    since = until - 86400 if since is None else since
    if not 60 <= bucket <= 7 * 86400:
        raise HTTPException(422, f"bucket must be 60 to 604800 seconds, got {bucket}")
    if not 0 < (until - since) / bucket <= MAX_BUCKETS:
        raise HTTPException(422, f"since must be before until, at most {MAX_BUCKETS} buckets apart")
    series: dict[tuple, list[list[float]]] = {}
    for cam, zone, kind, direction, start, n in service.store.counts(
        bucket=bucket, since=since, until=until, camera=camera, type=type
    ):
        series.setdefault((cam, zone, kind, direction), []).append([start, n])
    keys = ("camera", "zone", "type", "direction")
    return {
        "bucket": bucket,
        "since": since,
        "until": until,
        "series": [{**dict(zip(keys, key)), "counts": points} for key, points in series.items()],
    }


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
        service = self.current()
        yield from self._service(service.status())
        cameras = service.cameras_status()
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
    def _service(status: dict) -> Iterator[Metric]:
        gauges = {
            "inference_threads": "Threads inferring frames",
            "clips_waiting": "Clips waiting for the clip writer",
            "storage_bytes": "Bytes of the snapshots and clips kept",
            "storage_free_bytes": "Bytes free on the disk of the storage folder",
            "mqtt_unsent": "Event messages the MQTT broker has not acknowledged yet",
        }
        for key, doc in gauges.items():
            if status[key] is not None:
                yield GaugeMetricFamily(f"{PREFIX}{key}", doc, value=status[key])
        yield GaugeMetricFamily(
            f"{PREFIX}storage_ok", "1 while the store takes writes", value=float(status["storage_problem"] is None)
        )
        yield CounterMetricFamily(
            f"{PREFIX}events_not_stored", "Events the store refused (a full disk)", value=status["events_not_stored"]
        )
        yield CounterMetricFamily(f"{PREFIX}clips_written", "Clips written", value=status["clips_written"])
        yield CounterMetricFamily(
            f"{PREFIX}clips_fast_codec",
            "Clips written in the fast codec (mp4v) as the writer was behind or the service stopping",
            value=status["clips_fast_codec"],
        )

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


class AppServer:
    """uvicorn serving the FastAPI application of :meth:`app` on ``bind``:``port`` from a thread of its own."""

    port_option = "web.port"  # what to change when the port is taken

    def __init__(self, *, bind: str, port: int) -> None:
        self.bind, self.port = bind, port
        self._server = None
        self._thread: threading.Thread | None = None

    def app(self) -> FastAPI:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://{self.bind}:{self.port}/"

    def start(self, *, timeout: float = 10.0) -> None:
        """Serve; one sentence when the port is taken. Returns once the server answers."""
        import uvicorn

        sock = _listening_socket(self.bind, self.port, self.port_option)
        app = self.app()
        config = uvicorn.Config(app, log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        logger.info("web page at %s", self.url)

    def close(self, *, timeout: float = 2.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout)


class WebServer(AppServer):
    """The page and API of the watch service ``current()`` (see :func:`make_app`)."""

    def __init__(
        self,
        current: Current,
        *,
        bind: str,
        port: int,
        auth: AuthConfig | None = None,
        editor: ConfigEditor | None = None,
        sessions: Path | None = None,
    ) -> None:
        super().__init__(bind=bind, port=port)
        self.current, self.auth, self.editor, self.sessions = current, auth, editor, sessions

    def app(self) -> FastAPI:
        return make_app(self.current, auth=self.auth, editor=self.editor, sessions=self.sessions)


def _listening_socket(bind: str, port: int, option: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((bind, port))
    except OSError as exc:
        sock.close()
        raise EdgevisionError(
            f"cannot serve the web API on {bind}:{port} ({exc.strerror}); free the port or set {option}."
        ) from None
    sock.listen(64)
    sock.set_inheritable(True)
    return sock
