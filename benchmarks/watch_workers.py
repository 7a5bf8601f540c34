"""How many frames a second the watch service infers across several cameras, by ``workers`` and ``isolate``.

Each camera reads the first ``--frames`` frames of the sample video unpaced (every frame goes
to the model, as fast as it takes them, as ``Service(paced=False)`` does), with a zone and a
line, motion gating off. Every setting runs once per round, the settings alternating, so a
change in the machine's speed touches each alike; medians over the rounds. Printed per
setting: inference threads, frames inferred a second across all cameras (median, min, max),
events and clip files of one run, and the ratio to the first setting; last, the events must
be the same in every setting (each camera's frames reach its tracker in order whatever the
threads). As in the service, each event also stores a snapshot and has a clip (events close
in time share one), whose encoding in this busy scene (an event every few frames) takes much
of the CPU.

    python benchmarks/watch_workers.py --cameras 3 --frames 200 --rounds 3
    python benchmarks/watch_workers.py --model nanodet-m --cameras 2 --settings 1 2

A setting is a worker count, with ``i`` for ``isolate: true`` (worker processes).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from edgevision.watch.config import watch_config_from_dict
from edgevision.watch.serve import model_loader
from edgevision.watch.service import Service
from edgevision.zoo.assemble import close_workers
from watch_soak import make_clip  # this folder's soak benchmark: the sample video's frames as an MJPG .avi

ZONE = [[0.0, 0.3], [1.0, 0.3], [1.0, 1.0], [0.0, 1.0]]  # the walkway, where people walk
LINE = {"points": [[0.5, 0.0], [0.5, 1.0]]}


def config(folder: Path, clip: Path, cameras: int, model: str, workers: int, isolate: bool):
    camera = {"source": str(clip), "zones": {"walkway": ZONE}, "lines": {"path": LINE}, "motion": {"enabled": False}}
    values = {
        "model": model,
        "workers": workers,
        "isolate": isolate,
        "storage": {"path": str(folder / "data")},
        "cameras": {f"cam{k}": camera for k in range(cameras)},
    }
    return watch_config_from_dict(values, base=folder)


def one_run(settings, loaded) -> tuple[float, int, list]:
    """Every frame of every camera through a started service (a store of its own): frames a second,
    inference threads, events."""
    service = Service(settings, loader=lambda model: loaded, paced=False)
    start = time.perf_counter()
    service.start()
    try:
        for camera in service.cameras.values():
            while not (camera.state == "stopped" and not camera.ready):
                time.sleep(0.01)
        inferred = lambda: sum(c.inferred for c in service.cameras.values())  # noqa: E731
        total = sum(c.captured for c in service.cameras.values())
        while inferred() < total:  # the last frames leave the model
            time.sleep(0.005)
        seconds = time.perf_counter() - start
        threads = service.inference_threads
        events = sorted(
            (e.camera, e.type, e.zone, e.track_id, e.label, e.direction) for e in service.store.events(limit=100_000)
        )
    finally:
        service.stop()
    return total / seconds, threads, events


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="nanodet-m")
    parser.add_argument("--cameras", type=int, default=3)
    parser.add_argument("--frames", type=int, default=200, help="frames of the sample video per camera")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--settings", nargs="+", default=["1", "2", "1i", "2i"])
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="edgevision-watch-workers-") as tmp:
        folder = Path(tmp)
        clip = make_clip(folder / "clip.avi", 0, args.frames)  # MJPEG: cheap to decode next to the model
        settings = {}  # name -> (workers, isolate, the model loaded once for every round)
        for name in args.settings:
            workers, isolate = int(name.rstrip("i")), name.endswith("i")
            loader = model_loader(config(folder, clip, args.cameras, args.model, workers, isolate))
            settings[name] = (workers, isolate, loader(args.model))
        print(f"{args.model}, {args.cameras} cameras x {args.frames} frames, {args.rounds} rounds", flush=True)
        fps: dict[str, list[float]] = {name: [] for name in settings}
        threads, events, clips = {}, {}, {}
        try:
            for round_ in range(args.rounds):
                for name, (workers, isolate, loaded) in settings.items():
                    run = folder / f"{name}-{round_}"
                    made = config(run, clip, args.cameras, args.model, workers, isolate)
                    rate, threads[name], events[name] = one_run(made, loaded)
                    clips[name] = len(list((run / "data").rglob("*.mp4")))
                    fps[name].append(rate)
                    print(f"  round {round_ + 1}, {name}: {rate:.1f} frames/s", flush=True)
        finally:
            for _, _, loaded in settings.values():
                if isinstance(loaded, list):
                    close_workers(loaded)
    base = statistics.median(fps[args.settings[0]])
    print(
        f"{'setting':<24} {'threads':>7} {'frames/s p50':>12} {'min':>7} {'max':>7} {'events':>6} {'clips':>6} "
        f"{'ratio':>6}"
    )
    for name, (workers, isolate, _) in settings.items():
        label = f"workers {workers}" + (", isolate" if isolate else "")
        median = statistics.median(fps[name])
        print(
            f"{label:<24} {threads[name]:>7} {median:>12.1f} {min(fps[name]):>7.1f} {max(fps[name]):>7.1f} "
            f"{len(events[name]):>6} {clips[name]:>6} {median / base:>5.2f}x"
        )
    same = all(e == events[args.settings[0]] for e in events.values())
    print(f"same events in every setting: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
