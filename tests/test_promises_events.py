"""Events survive the end of a run: each line complete and on disk as soon as it is reported.

``edgevision run`` writes one JSON line per event, flushed and fsynced at once, with a
snapshot beside it. These tests stop real runs of the real detector on the pedestrian
video: with Ctrl-C (the run finishes cleanly), and with SIGKILL right after the run has
reported events (nothing is closed, so only lines already flushed can be there).
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import default_signals

# The whole frame (0-1 fractions): every person tracked from the first frames "enters" it,
# so events come within the first second of video, long before the clip ends.
EVERYWHERE = "everywhere:0,0,1,0,1,1,0,1"
PROGRESS_EVENTS = re.compile(r"^run: \d+ frames .*\| events (\d+)$")
# Logged once an event's line has been written (and, as promised, flushed).
EVENT_LOGGED = re.compile(r"\bevent: (enter|dwell|cross) ")
WAIT_S = 240


class LiveRun:
    """``edgevision run`` in a child process, its stderr read line by line as it comes."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edgevision", "run", *map(str, args)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            preexec_fn=default_signals,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, at_least: int, *, logged: bool) -> int:
        """Block until ``at_least`` events are reported; return how many were.

        ``logged``: count the run's "event: ..." log lines (each printed after its line was
        written); else read the count of the periodic progress line.
        """
        deadline, count = time.monotonic() + WAIT_S, 0
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1.0)
            except queue.Empty:
                continue
            if line is None:
                break
            self.stderr.append(line)
            if logged:
                count += bool(EVENT_LOGGED.search(line))
            elif found := PROGRESS_EVENTS.match(line.strip()):
                count = int(found.group(1))
            if count >= at_least:
                return count
        self.kill()
        pytest.fail(f"the run never reported {at_least} events:\n" + "\n".join(self.stderr[-20:]))

    def finish(self, timeout: float = 60) -> str:
        """Wait for the process to end; all of its stderr."""
        self.process.wait(timeout=timeout)
        while (line := self.lines.get(timeout=10)) is not None:
            self.stderr.append(line)
        return "\n".join(self.stderr)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def live_runs():
    runs: list[LiveRun] = []

    def start(*args: str) -> LiveRun:
        runs.append(LiveRun(*args))
        return runs[-1]

    yield start
    for run in runs:
        run.kill()


def complete_events(path: Path) -> list[dict]:
    """Every line of the events file, each a whole JSON object; its snapshots exist."""
    text = path.read_text(encoding="utf-8")
    assert text, "the events file is empty"
    assert text.endswith("\n"), f"the last line is cut short: {text.splitlines()[-1]!r}"
    events = [json.loads(line) for line in text.splitlines()]
    for event in events:
        assert {"time", "frame", "type", "zone", "track_id", "snapshot"} <= set(event), event
        assert (path.parent / event["snapshot"]).is_file(), event["snapshot"]
    return events


def _run_args(samples_cache, events: Path, *extra: str) -> list:
    return [
        "nanodet-m",
        "--source",
        samples_cache["vtest.avi"],
        "--zone",
        EVERYWHERE,
        "--events",
        events,
        "--threads",
        "2",
        *extra,
    ]


def test_events_reported_before_a_sigkill_are_on_disk_whole(samples_cache, live_runs, tmp_path):
    events_file = tmp_path / "events.jsonl"
    run = live_runs(*_run_args(samples_cache, events_file))
    logged = run.wait_for(2, logged=True)
    os.kill(run.process.pid, signal.SIGKILL)  # no cleanup, no close: only flushed lines survive
    run.process.wait(timeout=60)
    events = complete_events(events_file)
    assert len(events) >= logged, (len(events), logged)  # every event already logged is on disk
    assert [e["type"] for e in events] == ["enter"] * len(events)


def test_ctrl_c_ends_the_run_with_every_event_written_whole(samples_cache, live_runs, tmp_path):
    events_file = tmp_path / "events.jsonl"
    run = live_runs(*_run_args(samples_cache, events_file, "--stats", tmp_path / "stats.json"))
    run.wait_for(1, logged=False)
    run.process.send_signal(signal.SIGINT)
    stderr = run.finish()
    assert run.process.returncode == 0, stderr[-2000:]
    assert "Traceback" not in stderr
    events = complete_events(events_file)
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["frames"] < 795, "the run was not interrupted"  # vtest.avi has 795 frames
    assert len(events) == stats["events"] >= 1  # every event the run counted is in the file
    assert re.search(rf"^events: {len(events)} \(", stderr, re.MULTILINE), stderr[-2000:]


def _strace_problem() -> str | None:
    """Why strace cannot watch a process here (None when it can)."""
    if shutil.which("strace") is None:
        return "strace is not installed (apt-get install strace)"
    probe = subprocess.run(
        ["strace", "-f", "--seccomp-bpf", "-qq", "-e", "trace=fsync", "-o", os.devnull, "true"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return None if probe.returncode == 0 else f"strace cannot trace here: {probe.stderr.strip()[-300:]}"


def test_each_event_line_is_flushed_and_fsynced_before_the_next(samples_cache, tmp_path):
    """Seen from the kernel: every line reaches the file in its own write, followed by an fsync."""
    if problem := _strace_problem():
        pytest.skip(problem)
    events_file = tmp_path / "events.jsonl"
    trace = tmp_path / "trace.txt"
    args = _run_args(samples_cache, events_file, "--max-frames", "40")
    done = subprocess.run(
        [
            "strace",
            "-f",
            "--seccomp-bpf",
            "-y",
            "-qq",
            "-e",
            "trace=write,fsync,fdatasync",
            "-o",
            trace,
            sys.executable,
            "-m",
            "edgevision",
            "run",
            *map(str, args),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    events = complete_events(events_file)
    assert len(events) >= 2
    name = re.escape(str(events_file.resolve()))
    calls = []
    for line in trace.read_text().splitlines():
        call = re.search(rf"\b(write|fsync|fdatasync)\(\d+<{name}>", line)
        if call:
            calls.append(call.group(1))
    writes = [i for i, c in enumerate(calls) if c == "write"]
    assert len(writes) == len(events), calls  # one write per line, as each event comes
    for i in writes:
        assert i + 1 < len(calls) and calls[i + 1] in ("fsync", "fdatasync"), calls
