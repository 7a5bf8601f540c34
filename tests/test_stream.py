"""Network sources and the live MJPEG stream, with real servers and a real browser on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import cv2
import numpy as np
import pytest

from conftest import headless_chromium
from test_pipeline import PATH_ZONE, path_clip  # noqa: F401 - fixture

needs_ffmpeg = pytest.mark.skipif(
    shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (apt-get install ffmpeg)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cli:
    """``edgevision run`` in the background, its stderr collected line by line."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "COLUMNS": "200"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edgevision", "run", *map(str, args)],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line.rstrip())

    def wait_for(self, pattern: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(pattern in line for line in self.lines):
                return
            if self.process.poll() is not None:
                time.sleep(0.3)  # let the reader catch the last lines
                break
            time.sleep(0.1)
        raise AssertionError(f"no '{pattern}' in run output:\n" + "\n".join(self.lines))

    def finish(self, timeout: float) -> int:
        code = self.process.wait(timeout=timeout)
        time.sleep(0.3)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def serve_video(path, port: int) -> subprocess.Popen:
    """ffmpeg serving ``path`` in a loop, in real time, as MPEG-TS over HTTP on 127.0.0.1."""
    return subprocess.Popen(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-re",
            "-stream_loop",
            "-1",
            "-i",
            str(path),
            "-c:v",
            "mpeg2video",
            "-q:v",
            "5",
            "-f",
            "mpegts",
            "-listen",
            "1",
            f"http://127.0.0.1:{port}/live.ts",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.mark.slow
@needs_ffmpeg
def test_network_stream_survives_its_server_dying(path_clip, tmp_path):
    port = free_port()
    server = serve_video(path_clip, port)
    events = tmp_path / "events.jsonl"
    run = Cli(
        "nanodet-m",
        "--source",
        f"http://127.0.0.1:{port}/live.ts",
        "--zone",
        PATH_ZONE,
        "--threads",
        "2",
        "--events",
        events,
        "--out",
        tmp_path / "live.mp4",
        "--stats",
        tmp_path / "stats.json",
        "--max-frames",
        "150",
        "--connect-timeout",
        "15",
        "--give-up-after",
        "60",
    )
    try:
        run.wait_for("event: enter path", timeout=60)  # the first person entered on the live stream
        before = events.read_text()
        stop(server)
        run.wait_for("stopped sending frames; reconnecting", timeout=30)
        time.sleep(2)  # back-off retries against a dead port
        server = serve_video(path_clip, port)
        run.wait_for("reconnected to", timeout=40)
        assert run.finish(timeout=90) == 0, "\n".join(run.lines)
    finally:
        stop(server)
        run.kill()
    assert events.read_text().startswith(before) and before.strip()
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["frames"] + stats["dropped"] == 150 and stats["frames"] > 50  # live: stale frames dropped
    assert stats["reconnects"] >= 1
    assert "Traceback" not in "\n".join(run.lines)
    cap = cv2.VideoCapture(str(tmp_path / "live.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == stats["frames"]


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} never answered")


def test_mjpeg_stream_plays_in_a_headless_browser(path_clip, tmp_path):
    port = free_port()
    run = Cli("nanodet-m", "--source", path_clip, "--realtime", "--serve", port, "--zone", PATH_ZONE, "--threads", "2")
    browser = None
    try:
        _wait_http(f"http://127.0.0.1:{port}/", timeout=60)
        browser = headless_chromium(tmp_path / "profile", size="900,700")
        browser.get(f"http://127.0.0.1:{port}/")
        size = lambda: browser.execute_script(  # noqa: E731
            "const i = document.getElementById('live'); return [i.naturalWidth, i.naturalHeight];"
        )
        deadline = time.monotonic() + 20
        while size() != [768, 576] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert size() == [768, 576]
        first = _screenshot(browser, tmp_path / "first.png")
        time.sleep(1.5)
        second = _screenshot(browser, tmp_path / "second.png")
    finally:
        if browser is not None:
            browser.quit()
        if run.process.poll() is None:
            run.process.send_signal(signal.SIGINT)
        code = run.finish(timeout=30)
    assert code == 0, "\n".join(run.lines)
    assert first.std() > 20  # a real picture, not a blank page
    assert np.abs(first.astype(int) - second).mean() > 0.5  # and it moves
    zone_colour = np.abs(first.astype(int) - [0, 200, 255]).max(axis=2) < 40
    alert_colour = np.abs(first.astype(int) - [0, 0, 255]).max(axis=2) < 40
    assert (zone_colour | alert_colour).sum() > 200  # the zone is drawn on the streamed frames


def _screenshot(browser, path) -> np.ndarray:
    browser.save_screenshot(str(path))
    image = cv2.imread(str(path))
    assert image is not None
    return image
