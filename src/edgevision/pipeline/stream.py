"""Live annotated frames as an MJPEG stream over HTTP, for any browser.

The standard library's ``ThreadingHTTPServer`` is enough for a multipart MJPEG stream to a
few viewers, so no web framework is needed. Frames are JPEG-encoded only while someone
is watching. The server listens on the loopback address unless told otherwise.

Pages: ``/`` (an HTML page showing the stream), ``/stream.mjpg``, ``/snapshot.jpg``. The
page names the source; like anything user-controlled in a page, it is HTML-escaped.

>>> server = MjpegServer(port=8080)       # doctest: +SKIP
>>> server.publish(annotated_frame)       # doctest: +SKIP
>>> server.close()                        # doctest: +SKIP
"""

from __future__ import annotations

import html
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

from edgevision.errors import EdgevisionError

logger = logging.getLogger(__name__)

BOUNDARY = "edgevisionframe"
_PAGE = """<!doctype html>
<html><head><title>edgevision live</title>
<style>body{{margin:0;background:#111;color:#ddd;font-family:sans-serif}}img{{max-width:100%;display:block;margin:auto}}</style>
</head><body><p style="text-align:center">edgevision: {title}</p>
<img id="live" src="/stream.mjpg" alt="live stream"></body></html>
"""


class _Latest:
    """The newest JPEG and a condition that wakes viewers when it changes."""

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.jpeg: bytes | None = None
        self.serial = 0
        self.viewers = 0
        self.closed = False

    def wait_newer(self, serial: int, timeout: float = 1.0) -> tuple[bytes | None, int]:
        with self.condition:
            self.condition.wait_for(lambda: self.serial != serial or self.closed, timeout=timeout)
            return self.jpeg, self.serial


def _handler(latest: _Latest, title: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            routes = {
                "/": self._page,
                "/index.html": self._page,
                "/stream.mjpg": self._stream,
                "/snapshot.jpg": self._snapshot,
            }
            route = routes.get(self.path.split("?")[0])
            if route is None:
                self.send_error(HTTPStatus.NOT_FOUND)
                return
            route()

        def _page(self) -> None:
            self._send(_PAGE.format(title=html.escape(title)).encode(), "text/html; charset=utf-8")

        def _snapshot(self) -> None:
            if latest.jpeg is None:
                self.send_error(HTTPStatus.SERVICE_UNAVAILABLE, "no frame yet")
                return
            self._send(latest.jpeg, "image/jpeg")

        def _send(self, body: bytes, content_type: str) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _stream(self) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            with latest.condition:
                latest.viewers += 1
            try:
                self._send_frames()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the viewer left
            finally:
                with latest.condition:
                    latest.viewers -= 1

        def _send_frames(self) -> None:
            serial = -1
            while not latest.closed:
                jpeg, new_serial = latest.wait_newer(serial)
                if jpeg is None or new_serial == serial:
                    continue
                serial = new_serial
                head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                self.wfile.write(head.encode() + jpeg + b"\r\n")
                self.wfile.flush()

        def log_message(self, format: str, *args) -> None:  # noqa: A002 - signature of http.server
            logger.debug("mjpeg %s: " + format, self.client_address[0], *args)

    return Handler


class MjpegServer:
    """Serves the newest published frame to every viewer; ``port=0`` picks a free port."""

    def __init__(self, *, port: int, host: str = "127.0.0.1", title: str = "live", quality: int = 80) -> None:
        self._latest = _Latest()
        self.quality = quality
        try:
            self._server = ThreadingHTTPServer((host, port), _handler(self._latest, title))
        except OSError as exc:
            raise EdgevisionError(
                f"cannot serve on {host}:{port} ({exc.strerror}); choose another --serve port."
            ) from None
        self._server.daemon_threads = True
        self.host, self.port = self._server.server_address[:2]
        self._thread = threading.Thread(target=self._server.serve_forever, name="edgevision-mjpeg", daemon=True)
        self._thread.start()
        logger.info("live stream at %s", self.url)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def viewers(self) -> int:
        return self._latest.viewers

    def publish(self, image: np.ndarray, *, force: bool = False) -> None:
        """Offer a BGR frame to viewers (encoded only when someone watches, or with ``force``)."""
        if not (force or self._latest.viewers or self._latest.jpeg is None):
            return
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            return
        with self._latest.condition:
            self._latest.jpeg = jpeg.tobytes()
            self._latest.serial += 1
            self._latest.condition.notify_all()

    def close(self) -> None:
        with self._latest.condition:
            self._latest.closed = True
            self._latest.condition.notify_all()
        self._server.shutdown()
        self._server.server_close()
