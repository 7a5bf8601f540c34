"""Screenshots of the ``edgevision watch`` web page for the README, taken from the real page in headless Chromium.

Starts ``edgevision watch`` (this checkout's code) on two cameras looping 10 s clips of the
sample video, logs in with a password, waits ``--seconds`` for events and crossings, then
saves the live tiles, the event timeline with a clip playing, the count charts, the zone
editor and the live page at a phone's width as ``watch-*.png`` in ``--out``. Each PNG is
reduced to 256 colours so it stays under 200 KB. Needs chromium, chromium-driver,
selenium and (for clips that play) ffmpeg.

    python tools/ui_screenshots.py --out docs/images --seconds 240
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import cv2
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.action_chains import ActionChains

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from edgevision.samples import sample_path  # noqa: E402
from edgevision.watch.auth import hash_password  # noqa: E402

PASSWORD = "screenshots-only"
MAX_BYTES = 200_000


def clip_of_sample(path: Path, start: int, count: int = 100) -> Path:
    """Frames ``start`` to ``start + count`` of the sample video as an MJPG .avi at 10 fps."""
    cap = cv2.VideoCapture(str(sample_path("vtest.avi")))
    cap.set(cv2.CAP_PROP_POS_FRAMES, start)
    frames = [frame for ok, frame in (cap.read() for _ in range(count)) if ok]
    cap.release()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, frames[0].shape[1::-1])
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def write_config(folder: Path, port: int) -> Path:
    cameras = {
        "garden": {
            "source": str(clip_of_sample(folder / "garden.avi", 0)),
            "loop": True,
            "zones": {"walkway": [[0.0, 0.35], [1.0, 0.35], [1.0, 1.0], [0.0, 1.0]]},
            "rules": {"classes": ["person"], "dwell_s": 4},
        },
        "path": {
            "source": str(clip_of_sample(folder / "path.avi", 300)),
            "loop": True,
            "lines": {"crossing": {"points": [[0.45, 0.3], [0.6, 1.0]], "direction": "both"}},
        },
    }
    web = {"port": port, "auth": {"password_hash": hash_password(PASSWORD)}}
    config = {"storage": {"path": str(folder / "data")}, "cameras": cameras, "web": web}
    path = folder / "watch.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if answer := check():
                return answer
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"gave up waiting for {what} after {timeout:g} s")


def chromium(profile: Path) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"]
    for flag in [*flags, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    return webdriver.Chrome(service=DriverService(shutil.which("chromedriver")), options=options)


def save(browser: webdriver.Chrome, path: Path) -> None:
    """A screenshot of the page as it is, reduced to 256 colours (and halved if still too big)."""
    raw = path.with_suffix(".raw.png")
    browser.save_screenshot(str(raw))
    image = Image.open(raw).convert("RGB")
    raw.unlink()
    while True:
        image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
        if path.stat().st_size <= MAX_BYTES or image.width < 500:
            break
        image = image.resize((image.width * 3 // 4, image.height * 3 // 4), Image.Resampling.LANCZOS)
    print(f"{path}: {image.width}x{image.height}, {path.stat().st_size // 1024} KB")


def run(browser: webdriver.Chrome, base: str, out: Path, seconds: float) -> None:
    js = browser.execute_script
    browser.set_window_size(1280, 860)
    browser.get(f"{base}/#live")
    wait_until(lambda: js("return !document.getElementById('login').hidden"), 30, "the login form")
    browser.find_element("id", "secret").send_keys(PASSWORD)
    browser.find_element("css selector", "#login-form button").click()
    started = time.monotonic()
    wait_until(
        lambda: js("return [...document.querySelectorAll('.tile img')].filter(i => i.naturalWidth).length == 2"),
        60,
        "two tiles",
    )
    time.sleep(max(0.0, seconds - (time.monotonic() - started)))
    time.sleep(2)
    save(browser, out / "watch-live.png")

    browser.get(f"{base}/#events")
    wait_until(lambda: js("return document.querySelector('.event .has-clip')"), 60, "an event with a clip")
    time.sleep(2)  # thumbnails
    save(browser, out / "watch-events.png")
    js("document.querySelector('.event .has-clip').closest('button').click()")
    wait_until(lambda: js("return document.getElementById('dialog-video').readyState >= 2"), 30, "the clip to play")
    time.sleep(1.5)
    js("document.getElementById('dialog-video').pause()")
    save(browser, out / "watch-event-clip.png")

    browser.get(f"{base}/#counts")
    js("const r = document.getElementById('count-range'); r.value = '900:60'; r.dispatchEvent(new Event('change'))")
    bars = "return document.querySelectorAll('.chart rect').length"
    wait_until(lambda: js(bars), 120, "crossings of the line")  # the page asks again every 10 s
    time.sleep(1)
    save(browser, out / "watch-counts.png")

    browser.get(f"{base}/#zones")
    select = (
        "const s = document.getElementById('editor-camera'); s.value = 'path'; s.dispatchEvent(new Event('change'))"
    )
    wait_until(lambda: js("return document.getElementById('editor-camera').options.length == 2"), 30, "the cameras")
    js(select)
    frame = "const i = document.getElementById('editor-frame'); return i.complete && i.naturalWidth"
    wait_until(lambda: js(frame), 30, "the frame")
    time.sleep(1)
    browser.find_element("id", "add-zone").click()
    svg = browser.find_element("id", "editor-svg")
    for x, y in [(0.04, 0.62), (0.4, 0.5), (0.52, 0.97)]:  # a zone being drawn: three corners so far
        offset = round((x - 0.5) * svg.size["width"]), round((y - 0.5) * svg.size["height"])
        ActionChains(browser).move_to_element_with_offset(svg, *offset).click().perform()
    save(browser, out / "watch-editor.png")
    browser.find_element("id", "cancel").click()

    browser.set_window_size(400, 860)
    browser.get(f"{base}/#live")
    wait_until(
        lambda: js("return [...document.querySelectorAll('.tile img')].filter(i => i.naturalWidth).length == 2"),
        30,
        "two tiles",
    )
    time.sleep(2)
    js("window.scrollTo(0, 0)")
    save(browser, out / "watch-phone.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--seconds", type=float, default=240, help="how long the service runs before the first shot")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="watch-shots-") as tmp:
        folder, port = Path(tmp), free_port()
        config = write_config(folder, port)
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        log = open(folder / "stderr.txt", "w")  # noqa: SIM115 - open for the process's whole life
        process = subprocess.Popen([sys.executable, "-m", "edgevision", "watch", str(config)], stderr=log, env=env)
        base = f"http://127.0.0.1:{port}"
        browser = None
        try:
            wait_until(
                lambda: urllib.request.urlopen(f"{base}/api/health", timeout=2).status == 200, 120, "the service"
            )
            browser = chromium(folder / "profile")
            run(browser, base, args.out, args.seconds)
        finally:
            if browser is not None:
                browser.quit()
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=15)
            log.close()


if __name__ == "__main__":
    main()
