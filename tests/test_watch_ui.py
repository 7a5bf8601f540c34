"""The watch web page for real: one ``edgevision watch`` process with a login, over plain HTTP and in headless Chromium.

The browser tests share the process and the browser (module fixtures) and run in order:
the page and its events, text from the store shown as text, then the editor, whose save
rewrites the config and reloads the service.
"""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from conftest import assert_clean_error, headless_chromium, run_cli, write_first_frames
from edgevision.watch import video
from edgevision.watch.auth import SESSIONS_FILE, Sessions, Throttle, hash_password, verify_password
from edgevision.watch.config import watch_config_from_dict
from edgevision.watch.http import WebServer
from edgevision.watch.service import Service
from test_watch_service import WALKWAY, free_port, poll, start_watch

TOKEN = "ui-test-token-0123456789"
PASSWORD = "correct horse battery"
DRAWN = [[0.02, 0.35], [0.98, 0.35], [0.98, 0.98], [0.02, 0.98]]  # the walkway, drawn by hand in the editor


# ---------------------------------------------------------------- plain HTTP


def call(base: str, method: str, path: str, *, token=None, cookie=None, csrf=None, body=None, origin=None, host=None):
    """``(status, headers, JSON or bytes)`` of one request to the running page."""
    headers = {"Accept": "application/json", **({"Host": host} if host else {})}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if cookie:
        headers["Cookie"] = cookie
    if csrf:
        headers["X-CSRF-Token"] = csrf
    if origin:
        headers["Origin"] = origin
    data = None if body is None else json.dumps(body).encode()
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(base + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=90) as reply:
            status, got, raw = reply.status, reply.headers, reply.read()
    except urllib.error.HTTPError as error:
        status, got, raw = error.code, error.headers, error.read()
    except OSError:  # not listening (yet, or any more)
        return 0, {}, None
    is_json = "json" in (got.get("content-type") or "")
    return status, got, json.loads(raw) if is_json else raw


def log_in(base: str, secret: str) -> tuple[str, str]:
    """``(cookie header, CSRF token)`` of a new session."""
    status, headers, body = call(base, "POST", "/api/login", body={"secret": secret})
    assert status == 200, body
    cookie = headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    return cookie.split(";")[0], body["csrf"]


# ---------------------------------------------------------------- the running service


@pytest.fixture(scope="module")
def site(samples_cache, tmp_path_factory):
    """A running ``edgevision watch``: left has a walkway zone and a line, right nothing until the editor adds it."""
    folder = tmp_path_factory.mktemp("watch-ui")
    clip = write_first_frames(samples_cache["vtest.avi"], folder / "walkway.avi", 60)
    port = free_port()
    left = {
        "source": str(clip),
        "loop": True,
        "zones": {"walkway": WALKWAY},
        "lines": {"middle": {"points": [[0.5, 0.0], [0.5, 1.0]]}},
    }
    config = {
        "model": "nanodet-m",
        "storage": {"path": str(folder / "data")},
        "cameras": {"left": left, "right": {"source": str(clip), "loop": True}},
        "web": {"port": port, "auth": {"token": TOKEN, "password_hash": hash_password(PASSWORD)}},
    }
    path = folder / "watch.yaml"
    path.write_text("# the UI test's config\n" + yaml.safe_dump(config, sort_keys=False))
    log = folder / "stderr.txt"
    process = start_watch(path, log)
    base = f"http://127.0.0.1:{port}"
    try:
        poll(lambda: process.poll() is not None or call(base, "GET", "/api/health")[0] == 200, timeout=90)
        assert process.poll() is None, log.read_text()
        yield {"base": base, "config": path, "log": log, "data": folder / "data", "process": process}
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    assert process.returncode == 0 and "Traceback" not in log.read_text(), log.read_text()[-3000:]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = headless_chromium(tmp_path_factory.mktemp("chromium"), size="1200,900")
    yield driver
    driver.quit()


def js(browser, script: str, *args):
    return browser.execute_script(script, *args)


def wait_for(browser, script: str, *args, timeout: float = 30):
    """The first truthy value of ``script`` run in the page; fails after ``timeout`` s."""
    return poll(lambda: js(browser, script, *args), timeout=timeout, every=0.2)


def visit(browser, base: str, view: str) -> None:
    """Open ``view`` of the page, logging in with the password first when the page asks for it."""
    browser.get(f"{base}/#{view}")
    shown = (
        "const v = id => !document.getElementById(id).hidden; return v('login') ? 'login' : v(arguments[0]) && 'view'"
    )
    if wait_for(browser, shown, view) == "login":
        browser.find_element("id", "secret").send_keys(PASSWORD)
        browser.find_element("css selector", "#login-form button").click()
        wait_for(browser, "return !document.getElementById(arguments[0]).hidden", view)


def csp_violations(browser) -> list[str]:
    return [e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]


# ---------------------------------------------------------------- refusals without a browser


def test_a_page_open_to_other_machines_without_auth_is_refused_with_exit_2(tmp_path):
    path = tmp_path / "watch.yaml"
    path.write_text("cameras: {gate: {source: 0}}\nweb: {bind: 0.0.0.0}\n")
    for args in ([path, "--check"], [path]):
        done = run_cli("watch", *args)
        assert_clean_error(done, "web: binding 0.0.0.0 opens the web page to other machines", "web.auth")
        assert len([line for line in done.stderr.splitlines() if line.strip()]) == 1  # one sentence
    path.write_text(f"cameras: {{gate: {{source: 0}}}}\nweb: {{bind: 0.0.0.0, auth: {{token: {TOKEN}}}}}\n")
    done = run_cli("watch", path, "--check")
    assert done.returncode == 0 and "(login: token)" in done.stdout and TOKEN not in done.stdout


def test_hash_password_makes_a_hash_the_config_takes():
    done = run_cli("watch", "--hash-password", input=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    stored = done.stdout.strip()
    assert stored.startswith("scrypt$") and verify_password(PASSWORD, stored) and not verify_password("x" * 9, stored)
    watch_config_from_dict({"cameras": {"a": {"source": "0"}}, "web": {"auth": {"password_hash": stored}}}, base=Path())
    assert_clean_error(run_cli("watch", "--hash-password", input="short\n"), "at least 8 characters")


def test_failed_logins_are_throttled_per_address():
    throttle = Throttle(failures=3, window_s=0.3)
    for _ in range(3):
        assert not throttle.blocked("10.0.0.9")
        throttle.failed("10.0.0.9")
    assert throttle.blocked("10.0.0.9") and not throttle.blocked("10.0.0.7")
    time.sleep(0.35)
    assert not throttle.blocked("10.0.0.9")


def test_without_auth_reads_are_open_and_writes_refused(tmp_path):
    config = watch_config_from_dict({"cameras": {"gate": {"source": "0"}}, "web": {"port": free_port()}}, base=tmp_path)
    service = Service(config)  # never started: the API says 503 for its data, the page and refusals still answer
    server = WebServer(lambda: service, bind="127.0.0.1", port=config.web.port)
    server.start()
    base = f"http://127.0.0.1:{config.web.port}"
    try:
        assert call(base, "GET", "/api/session")[2] == {
            "auth": False,
            "signed_in": False,
            "can_read": True,
            "can_write": False,
            "csrf": None,
        }
        assert call(base, "GET", "/api/cameras")[0] == 503  # read: allowed, the service is just not running
        assert call(base, "GET", "/api/cameras", host=f"localhost:{config.web.port}")[0] == 503
        assert call(base, "GET", "/api/cameras", host="rebound.example:80")[0] == 403  # DNS rebinding
        status, _, body = call(base, "PUT", "/api/cameras/gate/geometry", body={"zones": {}}, token=TOKEN)
        assert status == 403 and "web.auth" in body["detail"]
        assert call(base, "POST", "/api/login", body={"secret": TOKEN})[0] == 403
        status, headers, page = call(base, "GET", "/")
        assert status == 200 and b"/ui/app.js" in page and "default-src 'self'" in headers["content-security-policy"]
    finally:
        server.close()


def test_reads_need_a_login_and_writes_a_token_or_a_session_with_its_csrf_token(site):
    base, config = site["base"], site["config"]
    original = config.read_text()
    assert call(base, "GET", "/api/health")[0] == 200
    assert call(base, "GET", "/")[0] == 200 and call(base, "GET", "/ui/app.js")[0] == 200  # the page holds no data
    for path in ("/api/cameras", "/api/events", "/api/counts", "/api/cameras/left/latest.jpg", "/metrics"):
        assert call(base, "GET", path)[0] == 401, path
        assert call(base, "GET", path, token="wrong-token-0123456789")[0] == 401, path
    assert call(base, "GET", "/api/cameras", token=TOKEN)[0] == 200

    assert call(base, "POST", "/api/login", body={"secret": "not the password"})[0] == 401
    cookie, csrf = log_in(base, PASSWORD)
    assert call(base, "GET", "/api/cameras", cookie=cookie)[0] == 200
    assert call(base, "GET", "/api/session", cookie=cookie)[2]["csrf"] == csrf

    bad = {"zones": {"bad": [[0.1, 0.5], [0.9, 0.5]]}}  # two points: refused by the config's own rules
    put = lambda **kw: call(base, "PUT", "/api/cameras/right/geometry", body=bad, **kw)  # noqa: E731
    assert put()[0] == 401
    assert put(token="wrong-token-0123456789")[0] == 401
    assert put(cookie=cookie)[0] == 403  # a session without its CSRF token
    assert put(cookie=cookie, csrf="forged")[0] == 403
    assert put(cookie=cookie, csrf=csrf, origin="http://evil.example")[0] == 403
    assert put(token=TOKEN, origin="http://evil.example")[0] == 403
    for allowed in (put(token=TOKEN), put(cookie=cookie, csrf=csrf)):
        status, _, body = allowed  # let through, then judged by the config's rules
        assert status == 422 and body["detail"]["problems"] == [
            "cameras.right.zones.bad: a zone needs at least 3 points, got 2"
        ]
    assert config.read_text() == original  # nothing was written

    status, _, body = call(base, "PUT", "/api/cameras/right/geometry", body={"zones": {}, "lines": {}}, token=TOKEN)
    assert status == 200, body
    assert config.with_name("watch.yaml.bak").read_text() == original
    assert yaml.safe_load(config.read_text()) == yaml.safe_load(original)  # the same config, written anew
    assert call(base, "PUT", "/api/cameras/nobody/geometry", body={}, token=TOKEN)[0] == 404

    edited = config.read_text().replace("model: nanodet-m", "model: no-such-model")  # a hand edit, not reloaded
    config.write_text(edited)
    status, _, body = call(base, "PUT", "/api/cameras/right/geometry", body={"zones": {}}, token=TOKEN)
    assert status == 422 and "refused the new config" in body["detail"]["problems"][0] and "no-such-model" in str(body)
    assert config.read_text() == edited  # put back as it was, and the old config runs on
    assert call(base, "GET", "/api/cameras", token=TOKEN)[0] == 200
    config.write_text(original)

    call(base, "POST", "/api/logout", cookie=cookie, csrf=csrf)
    assert call(base, "GET", "/api/cameras", cookie=cookie)[0] == 401  # the session is gone, not just its cookie


def test_counts_are_bucketed_from_the_stored_events(site):
    base = site["base"]
    poll(lambda: call(base, "GET", "/api/events?type=enter", token=TOKEN)[2], timeout=60)
    status, _, counts = call(base, "GET", "/api/counts?type=enter&bucket=60", token=TOKEN)
    assert status == 200 and counts["bucket"] == 60
    entries = [s for s in counts["series"] if s["zone"] == "walkway"]
    assert entries and all(start % 60 == 0 and n > 0 for s in entries for start, n in s["counts"])
    assert call(base, "GET", "/api/counts?bucket=1", token=TOKEN)[0] == 422
    assert call(base, "GET", "/api/counts?bucket=60&since=0", token=TOKEN)[0] == 422  # too many buckets


# ---------------------------------------------------------------- in the browser


def test_page_shows_live_tiles_and_events_whose_clip_plays(site, browser):
    visit(browser, site["base"], "live")
    sizes = wait_for(
        browser,
        "const s = [...document.querySelectorAll('.tile img')].map(i => [i.naturalWidth, i.naturalHeight]);"
        "return s.length === 2 && s.every(([w]) => w > 0) && s;",
    )
    assert sizes == [[768, 576], [768, 576]]
    captions = js(browser, "return [...document.querySelectorAll('.tile figcaption')].map(c => c.textContent)")
    assert "left" in captions[0] and "walkway" in captions[0] and "middle" in captions[0]
    assert js(browser, "return document.querySelectorAll('.tile svg polygon.zone').length") == 1  # the zone drawn

    visit(browser, site["base"], "events")
    wait_for(browser, "return [...document.querySelectorAll('.event img')].some(i => i.complete && i.naturalWidth)")
    wait_for(browser, "return document.querySelector('.event .has-clip')", timeout=40)
    js(browser, "document.querySelector('.event .has-clip').closest('button').click()")
    assert js(browser, "return document.getElementById('event-dialog').open")
    if shutil.which("ffmpeg"):  # clips are H.264: Chromium decodes a frame
        state = wait_for(
            browser,
            "const v = document.getElementById('dialog-video');"
            "return (v.readyState >= 2 || v.error) && [v.readyState, v.error && v.error.code, v.videoWidth];",
        )
        assert state[0] >= 2 and state[1] is None and state[2] == 768, state
    else:  # mp4v: the page says so and offers the download
        wait_for(browser, "return !document.getElementById('dialog-clip-note').hidden")

    visit(browser, site["base"], "counts")
    charts = wait_for(
        browser,
        "const c = document.querySelectorAll('.chart'); return c.length && [...c].map(f => f.dataset.camera + '/' + f.dataset.zone)",
    )
    assert "left/middle" in charts
    assert csp_violations(browser) == []


def test_text_from_the_store_is_shown_as_text_never_run(site, browser):
    hostile = "<img src=x onerror=\"document.title='pwned'\">"
    with sqlite3.connect(site["data"] / "events.db", timeout=10) as db:  # as another writer would
        db.execute(
            "INSERT INTO events (camera, type, time, zone, label, score) VALUES (?, ?, ?, ?, ?, ?)",
            ("left", "enter", time.time() + 60, "<b>zone</b>", hostile, 0.5),
        )
    visit(browser, site["base"], "events")
    wait_for(browser, "return document.getElementById('event-list').textContent.includes(arguments[0])", hostile)
    js(browser, "[...document.querySelectorAll('.event')].find(b => b.textContent.includes('<b>zone')).click()")
    details = js(browser, "return document.getElementById('dialog-details').textContent")
    assert hostile in details
    assert js(browser, "return document.querySelectorAll('[onerror], b').length") == 0  # no element was made of it
    assert js(browser, "return document.title") == "edgevision watch"
    assert csp_violations(browser) == []


def test_a_zone_drawn_in_the_editor_is_saved_reloaded_and_fires(site, browser):
    base, config = site["base"], site["config"]
    visit(browser, base, "zones")
    wait_for(browser, "return document.getElementById('editor-camera').options.length === 2")
    js(
        browser,
        "const s = document.getElementById('editor-camera'); s.value = 'right'; s.dispatchEvent(new Event('change'))",
    )
    wait_for(browser, "const i = document.getElementById('editor-frame'); return i.complete && i.naturalWidth")

    draw_zone(browser, [[0.1, 0.5], [0.5, 0.5], [0.9, 0.5]])  # three points on one line: no area
    browser.find_element("id", "save").click()
    problems = wait_for(browser, "return document.getElementById('problems').textContent")
    assert "cameras.right.zones.zone1: the zone's points lie on one line" in problems
    browser.find_element("id", "delete-shape").click()

    draw_zone(browser, DRAWN)
    name = browser.find_element("id", "shape-name")
    name.clear()
    name.send_keys("drawn")
    saved = time.time()
    browser.find_element("id", "save").click()
    wait_for(browser, "return document.getElementById('status').textContent.startsWith('Saved')", timeout=60)

    written = yaml.safe_load(config.read_text())["cameras"]["right"]["zones"]["drawn"]
    assert np.abs(np.array(written) - DRAWN).max() < 0.01, written  # fractions of the frame, as clicked
    assert "zone1" not in config.read_text()
    status, _, geometry = call(base, "GET", "/api/cameras/right/geometry", token=TOKEN)
    assert status == 200 and set(geometry["zones"]) == {"drawn"}
    right = next(c for c in call(base, "GET", "/api/cameras", token=TOKEN)[2] if c["name"] == "right")
    assert "drawn" in right["occupancy"]  # the reloaded service runs the new zone

    def entered() -> list:
        events = call(base, "GET", "/api/events?camera=right&type=enter", token=TOKEN)[2]
        return [e for e in events if e["zone"] == "drawn" and e["time"] >= saved - 1]

    assert poll(entered, timeout=60)  # people walking on the sample video enter the zone drawn by hand
    visit(browser, base, "live")
    wait_for(browser, "return document.querySelectorAll('.tile svg polygon.zone').length === 2")
    assert csp_violations(browser) == []


def draw_zone(browser, points) -> None:
    """Click Add zone, then each point on the frame (fractions), then Finish."""
    from selenium.webdriver.common.action_chains import ActionChains

    browser.find_element("id", "add-zone").click()
    svg = browser.find_element("id", "editor-svg")
    js(browser, "arguments[0].scrollIntoView({block: 'center'})", svg)
    width, height = svg.size["width"], svg.size["height"]
    for x, y in points:
        offset = round((x - 0.5) * width), round((y - 0.5) * height)  # selenium measures from the centre
        ActionChains(browser).move_to_element_with_offset(svg, *offset).click().perform()
    browser.find_element("id", "finish").click()
    wait_for(browser, "return !document.getElementById('shape-form').hidden")


# ---------------------------------------------------------------- clips that browsers play


def test_clips_are_h264_when_an_encoder_is_there_else_mp4v(tmp_path, monkeypatch, first_frame):
    frames = [np.roll(first_frame, 8 * k, axis=1) for k in range(10)]
    monkeypatch.setattr(video, "_failed", set())
    monkeypatch.setattr(video, "_worked", set())
    expected = "h264" if shutil.which("ffmpeg") else "mp4v"
    assert video.write_mp4(tmp_path / "a.mp4", frames, 10.0) == expected
    assert fourcc(tmp_path / "a.mp4") == ("h264" if expected == "h264" else "mp4v")

    monkeypatch.setenv("PATH", str(tmp_path))  # no ffmpeg: OpenCV's own H.264 if it has one, else mp4v
    monkeypatch.setattr(video, "_failed", set())
    monkeypatch.setattr(video, "_worked", set())
    codec = video.write_mp4(tmp_path / "b.mp4", frames, 10.0)
    assert fourcc(tmp_path / "b.mp4") == codec and codec in ("h264", "mp4v")


def fourcc(path: Path) -> str:
    cap = cv2.VideoCapture(str(path))
    code = int(cap.get(cv2.CAP_PROP_FOURCC))
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    assert frames == 10
    name = "".join(chr((code >> 8 * i) & 0xFF) for i in range(4)).lower()
    return {"avc1": "h264", "h264": "h264", "fmp4": "mp4v", "mp4v": "mp4v"}.get(name, name)


# ---------------------------------------------------------------- logins across restarts


def test_sessions_are_kept_hashed_across_restarts_and_end_with_a_new_login(tmp_path):
    path = tmp_path / SESSIONS_FILE
    first = Sessions(hours=1, path=path, login_secrets="token one")
    kept, ended = first.new(), first.new()
    first.end(ended.id)
    first.close()
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert kept.id.encode() not in stored and b"token one" not in stored  # only hashes on disk

    again = Sessions(hours=1, path=path, login_secrets="token one")  # a restart
    assert again.get(kept.id) == kept and again.get(ended.id) is None and again.get("made up") is None
    again.close()
    changed = Sessions(hours=1, path=path, login_secrets="token two")  # a new token ends every session
    assert changed.get(kept.id) is None
    brief = changed.new()
    changed.close()
    short = Sessions(hours=1e-6, path=path, login_secrets="token two")
    assert short.get(brief.id) is not None  # kept with the expiry it was made with
    fleeting = short.new()
    time.sleep(0.01)
    assert short.get(fleeting.id) is None
    short.close()
    assert Sessions(hours=1).get(kept.id) is None  # without a file: memory only


def test_a_browser_stays_logged_in_across_a_restart_of_the_watcher(tmp_path, samples_cache):
    clip = write_first_frames(samples_cache["vtest.avi"], tmp_path / "walkway.avi", 20)
    port = free_port()
    config = {
        "storage": {"path": str(tmp_path / "data")},
        "cameras": {"left": {"source": str(clip), "loop": True}},
        "web": {"port": port, "auth": {"token": TOKEN}},
    }
    path, log, base = tmp_path / "watch.yaml", tmp_path / "stderr.txt", f"http://127.0.0.1:{port}"

    def run_once(check) -> None:
        path.write_text(yaml.safe_dump(config))
        process = start_watch(path, log)
        try:
            poll(lambda: process.poll() is not None or call(base, "GET", "/api/health")[0] == 200, timeout=90)
            check()
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0

    session: dict[str, str] = {}

    def logged_in() -> None:
        session["cookie"], session["csrf"] = log_in(base, TOKEN)

    def still_logged_in() -> None:
        assert call(base, "GET", "/api/events", cookie=session["cookie"])[0] == 200
        state = call(base, "GET", "/api/session", cookie=session["cookie"])[2]
        assert state["signed_in"] and state["csrf"] == session["csrf"]  # the same session, its CSRF token too

    def logged_out() -> None:
        assert call(base, "GET", "/api/events", cookie=session["cookie"])[0] == 401

    run_once(logged_in)
    run_once(still_logged_in)
    config["web"]["auth"]["token"] = TOKEN + "-new"
    run_once(logged_out)
    assert "Traceback" not in log.read_text()
