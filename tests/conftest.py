from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tiny_models
from edgevision.benchmark.harness import TimingOptions

# Shared with test modules: from conftest import run_cli


def _in_ci() -> bool:
    """CI sets ``CI`` (to true); there every test must really run."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    return longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


def _ci_failure(reason: str) -> str:
    return f"skipped under CI (CI={os.environ.get('CI')}), where every test must run: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI a skipped test is a failed one, with the skip's reason (xfail stays xfail)."""
    outcome = yield
    report = outcome.get_result()
    if _in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = _ci_failure(_skip_reason(report))


_SKIPPED_MODULES: list[str] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A whole module skipped under CI (``pytest.importorskip`` at import): remembered, failed at the end.

    Turning the collect report itself into a failure would interrupt the session before any test runs.
    """
    outcome = yield
    report = outcome.get_result()
    if _in_ci() and report.skipped:
        _SKIPPED_MODULES.append(f"{report.nodeid}: {_ci_failure(_skip_reason(report))}")


def pytest_terminal_summary(terminalreporter):
    for line in _SKIPPED_MODULES:
        terminalreporter.write_line(f"FAILED {line}", red=True, bold=True)


def pytest_sessionfinish(session, exitstatus):
    if _SKIPPED_MODULES and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def tiny_model_files(tmp_path_factory) -> dict[str, Path]:
    """The tiny reference model in every format, keyed by backend name."""
    folder = tmp_path_factory.mktemp("tiny")
    files = tiny_models.build_torch(folder)
    return {
        "onnxruntime": files["onnx"],
        "openvino": tiny_models.build_openvino_ir(files["onnx"]),
        "litert": tiny_models.build_tflite(folder),
        "torch": files["torch"],
        "ncnn": tiny_models.build_ncnn(files["onnx"]),
    }


@pytest.fixture(scope="session")
def tiny_input() -> np.ndarray:
    return np.random.default_rng(1).uniform(-1, 1, tiny_models.INPUT_SHAPE).astype(np.float32)


def default_signals() -> None:
    """``preexec_fn`` for a child sent stop signals: SIGINT and SIGHUP as a terminal gives them.

    A test run started in the background (``cmd &``) inherits SIGINT ignored, and ``nohup``
    ignores SIGHUP; a child would inherit that and never see the signal the test sends.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def run_cli(
    *args: str, env: dict | None = None, cwd=None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real ``edgevision`` command in a fresh process (``input``: text for its stdin)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "edgevision", *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=900,
        input=input,
    )


def assert_clean_error(done, *needles: str) -> None:
    """A user error: exit code 2, no traceback, a short message holding every needle."""
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    text = " ".join(done.stderr.split())
    for needle in needles:
        assert needle in text, text
    assert len([line for line in done.stderr.splitlines() if line.strip()]) <= 3, done.stderr


def fastest_within_budget(records: list[dict], *, max_drop: float, threads: int) -> str:
    """The documented recommendation, worked out from results.json records: the fastest variant
    (p50 at ``threads``) whose agreement is within ``max_drop`` of the fp32 baseline's."""
    baseline = next(r for r in records if r["baseline"])
    within = [
        r
        for r in records
        if not r["error"] and r["agreement"] is not None and r["agreement"] >= baseline["agreement"] - max_drop - 1e-9
    ]
    return min(within, key=lambda r: r["threads"][str(threads)]["latency"]["p50"])["variant"]


@pytest.fixture(scope="session")
def samples_cache() -> dict[str, Path]:
    """Real sample media, fetched into the user cache once per machine."""
    from edgevision.samples import pull_samples

    return {p.name: p for p in pull_samples()}


def write_first_frames(source: Path, path: Path, count: int) -> Path:
    """The first ``count`` frames of video ``source`` written to ``path`` as an MJPG .avi at 10 fps."""
    import cv2

    cap = cv2.VideoCapture(str(source))
    writer = None
    for _ in range(count):
        ok, frame = cap.read()
        assert ok
        if writer is None:
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, frame.shape[1::-1])
        writer.write(frame)
    writer.release()
    cap.release()
    return path


@pytest.fixture(scope="module")
def predictor():
    """nanodet-m, loaded once per test module."""
    from edgevision.zoo.assemble import load_predictor

    return load_predictor("nanodet-m")


@pytest.fixture(scope="module")
def clip(samples_cache, tmp_path_factory) -> Path:
    """40 frames (4 s at 10 fps) of the pedestrian video: people enter the walkway, one crosses the middle."""
    return write_first_frames(samples_cache["vtest.avi"], tmp_path_factory.mktemp("clip") / "walkway.avi", 40)


def walkway_run(clip: Path, out: Path, **options) -> tuple[list[dict], list[dict], dict]:
    """``edgevision.run`` of nanodet-m over ``clip`` with a zone on the walkway and a line across
    it (``options``: threads, workers, ...): its detection records, its events without their
    wall-clock time, and its event counts."""
    import json

    import edgevision
    from edgevision.pipeline.run import RunOutputs

    out.mkdir()
    summary = edgevision.run(
        "nanodet-m",
        str(clip),
        zones=("path:300,185,420,185,420,330,300,310",),
        lines=("crossing:560,170,560,420",),
        outputs=RunOutputs(json_lines=str(out / "d.jsonl"), events=out / "e.jsonl", snapshots=False),
        **options,
    )

    def records(path: Path) -> list[dict]:
        return [json.loads(line) for line in path.read_text().splitlines()]

    events = [{k: v for k, v in e.items() if k != "time"} for e in records(out / "e.jsonl")]
    return records(out / "d.jsonl"), events, summary


def frame_count(path: Path) -> int:
    """How many frames OpenCV reads from the video ``path``."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    return count


@pytest.fixture(scope="session")
def short_video(samples_cache, tmp_path_factory):
    """The first 12 frames of the pedestrian video, as an MJPG .avi."""
    return write_first_frames(samples_cache["vtest.avi"], tmp_path_factory.mktemp("video") / "vtest12.avi", 12)


@pytest.fixture(scope="session")
def first_frame(samples_cache):
    import cv2

    cap = cv2.VideoCapture(str(samples_cache["vtest.avi"]))
    ok, frame = cap.read()
    cap.release()
    assert ok
    return frame


# Bench timing short enough for tests: two rounds of 0.1 s per variant.
QUICK_TIMING = TimingOptions(
    rounds=2,
    round_seconds=0.1,
    min_iterations=3,
    warmup_iterations=2,
    warmup_seconds=0.05,
    pipeline_seconds=0.05,
    overhead_blocks=2,
)


CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def headless_chromium(profile: Path, *, size: str | None = None):
    """Debian's Chromium, headless, driven by selenium (the test is skipped when it is not installed).

    ``profile`` is its user-data folder; ``size`` its window, ``"WIDTH,HEIGHT"``. The browser's
    console is kept (``driver.get_log("browser")``). Call ``quit()`` when done.
    """
    webdriver = pytest.importorskip("selenium.webdriver")
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not (browser and driver):
        pytest.skip("Debian chromium and chromium-driver are not installed (see tools/system-packages)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (*CHROME_FLAGS, f"--user-data-dir={profile}", *([f"--window-size={size}"] if size else [])):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str):
    """A script of ``benchmarks/`` imported as a module (they are scripts, not a package)."""
    import importlib.util

    if str(BENCHMARKS) not in sys.path:
        sys.path.append(str(BENCHMARKS))  # they import each other by name, as when run as scripts
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module
