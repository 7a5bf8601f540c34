"""How many event clips survive a stop: ``edgevision watch`` on busy cameras, SIGTERM mid-stream.

The service runs in a process of its own on N looping copies of the sample video with a
zone and two lines, so events come fast and many clips are still open or queued when
SIGTERM arrives. The script waits for ``--events`` events (over the HTTP API), sends
SIGTERM, then reads the store: how many events have their clip, and how long the process
took to end (it must end within 5 s). Repeated ``--rounds`` times.

    python benchmarks/watch_stop_clips.py --cameras 3 --events 25 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from edgevision.samples import sample_path
from edgevision.watch.store import DATABASE

WALKWAY = [[0.0, 0.3], [1.0, 0.3], [1.0, 1.0], [0.0, 1.0]]
LINES = {"middle": {"points": [[0.5, 0.0], [0.5, 1.0]]}, "left": {"points": [[0.3, 0.0], [0.3, 1.0]]}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def event_count(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/events?limit=1000", timeout=5) as reply:
            return len(json.loads(reply.read()))
    except OSError:
        return 0


def one_round(folder: Path, *, cameras: int, events: int, model: str) -> dict:
    """Start the service, SIGTERM it after ``events`` events; what the store kept."""
    port = free_port()
    camera = {"source": str(sample_path("vtest.avi")), "loop": True, "zones": {"walkway": WALKWAY}, "lines": LINES}
    config = {
        "model": model,
        "storage": {"path": str(folder / "data")},
        "cameras": {f"cam{i}": camera for i in range(cameras)},
        "web": {"bind": "127.0.0.1", "port": port},
    }
    (folder / "watch.yaml").write_text(json.dumps(config))  # JSON is YAML
    with open(folder / "stderr.txt", "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "edgevision", "watch", str(folder / "watch.yaml")],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=os.environ,
        )
    try:
        deadline = time.monotonic() + 180
        while event_count(port) < events:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the service gave no {events} events; see {folder / 'stderr.txt'}")
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        start = time.monotonic()
        code = process.wait(timeout=30)
        took = time.monotonic() - start
    finally:
        if process.poll() is None:
            process.kill()
    with sqlite3.connect(folder / "data" / DATABASE) as db:
        clips = [row[0] for row in db.execute("SELECT clip FROM events")]
    return {"events": len(clips), "with_clip": sum(1 for c in clips if c), "exit_s": round(took, 2), "rc": code}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=3)
    parser.add_argument("--events", type=int, default=25, help="events to wait for before SIGTERM")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", default="nanodet-m")
    args = parser.parse_args()
    if min(args.cameras, args.events, args.rounds) < 1:
        parser.error("--cameras, --events and --rounds must each be at least 1")
    kept = total = 0
    for round_ in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            result = one_round(Path(tmp), cameras=args.cameras, events=args.events, model=args.model)
        kept, total = kept + result["with_clip"], total + result["events"]
        print(
            f"round {round_ + 1}: {result['with_clip']} of {result['events']} events have their clip; "
            f"the process ended {result['exit_s']} s after SIGTERM (exit code {result['rc']})",
            flush=True,
        )
    print(f"clips kept through SIGTERM: {kept} of {total} events")


if __name__ == "__main__":
    main()
