"""A soak of the real ``edgevision watch`` process: does memory, open files or threads grow while it runs?

Two cameras loop short clips of the sample video (so tracks end and begin again and events
keep coming); the process gets a config, storage folder and port of its own. Every
``--every`` seconds it samples the process's resident memory, open files and threads from
/proc, and its events and dropped frames from ``/api/cameras``. Growth is measured from the
first sample after ``--warmup`` seconds (models loaded, buffers filled) to the last.
Acceptance: events are stored, RSS grows less than 5%, open files and threads not at all,
and SIGTERM ends the process with exit code 0 within 5 s. Linux only (/proc).

``--isolate`` sets the config's ``isolate: true``: the model then infers in a worker process,
and resident memory counts the process and its children (the worker included).

    python benchmarks/watch_soak.py --minutes 30 --every 10
    python benchmarks/watch_soak.py --minutes 5 --isolate
    python benchmarks/watch_soak.py --minutes 5 --workers 2   # two copies, a camera each at a time
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import cv2

import edgevision
from edgevision.samples import sample_path

# The walkway, the lower 70% of the frame: people enter it in both clips, so events, snapshots
# and clips keep being written (examples/watch.yaml's smaller lawn sees no one in these frames).
ZONE = [[0.0, 0.3], [1.0, 0.3], [1.0, 1.0], [0.0, 1.0]]
CLIP_FRAMES = 100  # 10 s of the sample video per camera
MAX_RSS_GROWTH = 5.0  # percent
EXIT_WITHIN_S = 5.0


@dataclass
class Sample:
    """The process at one moment, ``t`` seconds after it was started."""

    t: float
    rss_mb: float
    open_files: int
    threads: int
    events: int
    dropped: int


@dataclass
class Soak:
    samples: list[Sample]
    exit_code: int | None  # None: still running after SIGTERM and EXIT_WITHIN_S
    exit_s: float


def make_clip(path: Path, start: int, count: int = CLIP_FRAMES) -> Path:
    """Frames ``start`` to ``start + count`` of the sample video, as an MJPG .avi."""
    cap = cv2.VideoCapture(str(sample_path("vtest.avi")))
    cap.set(cv2.CAP_PROP_POS_FRAMES, start)
    writer = None
    for _ in range(count):
        ok, frame = cap.read()
        if not ok:
            break
        writer = writer or cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, frame.shape[1::-1])
        writer.write(frame)
    writer.release()
    cap.release()
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(folder: Path, port: int, *, isolate: bool = False, workers: int = 1) -> Path:
    cameras = {
        name: {"source": str(make_clip(folder / f"{name}.avi", start)), "loop": True, "zones": {"walkway": ZONE}}
        for name, start in (("left", 0), ("right", 300))
    }
    config = {"storage": {"path": str(folder / "data")}, "cameras": cameras, "web": {"port": port}}
    config |= {"isolate": isolate, "workers": workers}
    path = folder / "watch.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":", 1) for line in lines if ":" in line)


def children(pid: int) -> list[int]:
    """The processes ``pid`` started (an inference worker, a resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):  # ended while read
                continue
    return found


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its children, MB."""
    total = 0
    for each in [pid, *children(pid)]:
        try:
            total += int(proc_status(each)["VmRSS"].split()[0])
        except (OSError, KeyError):  # ended while read
            continue
    return total / 1024


def cameras(base: str) -> list[dict]:
    with urllib.request.urlopen(f"{base}/api/cameras", timeout=5) as reply:
        return json.load(reply)


def sample(pid: int, base: str, t: float) -> Sample:
    status = proc_status(pid)
    status_of = cameras(base)
    return Sample(
        t=round(t, 1),
        rss_mb=rss_mb(pid),
        open_files=len(os.listdir(f"/proc/{pid}/fd")),
        threads=int(status["Threads"]),
        events=sum(e["count"] for c in status_of for e in c["events"]),
        dropped=sum(c["dropped_frames"] for c in status_of),
    )


def start_watch(config: Path, log: Path) -> subprocess.Popen:
    src = str(Path(edgevision.__file__).resolve().parents[1])  # the same edgevision as this script's
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    with open(log, "w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "edgevision", "watch", str(config)], stdout=subprocess.DEVNULL, stderr=err, env=env
        )


def wait_healthy(process: subprocess.Popen, base: str, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"edgevision watch ended with {process.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{base}/api/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"edgevision watch did not answer within {timeout:g} s:\n{log.read_text()[-2000:]}")


def soak(seconds: float, every: float, folder: Path, *, isolate: bool = False, workers: int = 1) -> Soak:
    """Run ``edgevision watch`` for ``seconds`` from its first answer (its start-up is not counted;
    a busy machine can take many seconds to load the model), sampling every ``every`` s; then SIGTERM it.
    Sample times count from the process's start."""
    port = free_port()
    config, log = write_config(folder, port, isolate=isolate, workers=workers), folder / "stderr.txt"
    base = f"http://127.0.0.1:{port}"
    began = time.monotonic()
    process = start_watch(config, log)
    try:
        wait_healthy(process, base, log)
        answered, samples = time.monotonic(), []
        while time.monotonic() - answered <= seconds:
            samples.append(sample(process.pid, base, time.monotonic() - began))
            time.sleep(every)
        exit_code, exit_s = stop(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return Soak(samples, exit_code, exit_s)


def stop(process: subprocess.Popen) -> tuple[int | None, float]:
    """SIGTERM; the exit code (None if it had not ended within EXIT_WITHIN_S) and how long it took."""
    start = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=EXIT_WITHIN_S)
    except subprocess.TimeoutExpired:
        code = None
    return code, time.monotonic() - start


def summary(result: Soak, warmup: float) -> dict:
    """Growth from the first sample after ``warmup`` seconds to the last. Open files count from the
    most in the first third of those samples to the fewest in the last third: clip files and
    encoder pipes open and close between samples, while a leak raises even the fewest."""
    after = [s for s in result.samples if s.t >= warmup] or result.samples[-1:]
    first, last = after[0], after[-1]
    third = max(1, len(after) // 3)
    return {
        "from_s": first.t,
        "to_s": last.t,
        "rss_mb_first": round(first.rss_mb, 1),
        "rss_mb_last": round(last.rss_mb, 1),
        "rss_growth_pct": round(100 * (last.rss_mb - first.rss_mb) / first.rss_mb, 2),
        "open_files_first": max(s.open_files for s in after[:third]),
        "open_files_last": min(s.open_files for s in after[-third:]),
        "threads_first": first.threads,
        "threads_last": last.threads,
        "events": last.events,
        "dropped": last.dropped,
        "exit_code": result.exit_code,
        "exit_s": round(result.exit_s, 2),
    }


def checks(s: dict) -> list[tuple[bool, str]]:
    return [
        (s["events"] > 0, f"{s['events']} events stored (bar: some, or the store and clips were not exercised)"),
        (
            s["rss_growth_pct"] < MAX_RSS_GROWTH,
            f"RSS grew {s['rss_growth_pct']:+.2f}% ({s['rss_mb_first']} -> {s['rss_mb_last']} MB, "
            f"{s['from_s']:g} s -> {s['to_s']:g} s; bar: < {MAX_RSS_GROWTH:g}%)",
        ),
        (
            s["open_files_last"] <= s["open_files_first"],
            f"open files {s['open_files_first']} -> {s['open_files_last']} (most in the first third of the samples, "
            "fewest in the last; bar: no growth)",
        ),
        (
            s["threads_last"] <= s["threads_first"],
            f"threads {s['threads_first']} -> {s['threads_last']} (bar: no growth)",
        ),
        (
            s["exit_code"] == 0,
            f"SIGTERM: exit code {s['exit_code']} after {s['exit_s']:g} s (bar: 0 within {EXIT_WITHIN_S:g} s)",
        ),
    ]


def table(samples: list[Sample]) -> str:
    lines = [
        "| t s | RSS MB | open files | threads | events | dropped frames |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in samples:
        lines.append(f"| {s.t:g} | {s.rss_mb:.1f} | {s.open_files} | {s.threads} | {s.events} | {s.dropped} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long to run (default 30)")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples (default 10)")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before the growth baseline (default 60)")
    parser.add_argument("--isolate", action="store_true", help="infer in a worker process (isolate: true)")
    parser.add_argument(
        "--workers", type=int, default=1, help="copies of the model, one camera each at a time (workers: N)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        result = soak(args.minutes * 60, args.every, Path(folder), isolate=args.isolate, workers=args.workers)
    isolated = ", inference in worker processes" if args.isolate else ""
    isolated += f", {args.workers} workers" if args.workers > 1 else ""
    print(f"edgevision watch, 2 looping cameras{isolated}, {args.minutes:g} min, a sample every {args.every:g} s\n")
    print(table(result.samples))
    print()
    s = summary(result, args.warmup)
    print(json.dumps(s))
    outcomes = checks(s)
    for passed, line in outcomes:
        print(f"{'PASS' if passed else 'FAIL'}: {line}")
    return 0 if all(passed for passed, _ in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
