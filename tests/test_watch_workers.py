"""``workers`` in a watch config: several cameras inferred at once, each camera's frames in order.

Real parts: nanodet-m, the first 40 frames of the pedestrian video as three cameras read
unpaced (every frame reaches the model), the real service with its store.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from edgevision.models.base import Predictor
from edgevision.watch.config import watch_config_from_dict
from edgevision.watch.serve import model_loader
from edgevision.watch.service import Service
from edgevision.zoo.assemble import close_workers, load_workers

WALKWAY = [[0.0, 0.3], [1.0, 0.3], [1.0, 1.0], [0.0, 1.0]]  # the lower part of vtest.avi, where people walk
MIDDLE = {"points": [[0.5, 0.0], [0.5, 1.0]]}  # people walk across it
CAMERAS = ("left", "middle", "right")


class Watched:
    """Wraps one inference thread's predictor: which thread called it for which camera's frame, and
    whether two calls ever overlapped for one camera or at all."""

    def __init__(self, inner: Predictor, index: int, log: list, lock: threading.Lock, inside: dict) -> None:
        self.inner, self.index, self.log, self.lock, self.inside = inner, index, log, lock, inside

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, image):
        camera = round(float(image[:8, :8].mean()) / 80)  # each camera's clip is marked in its corner (below)
        with self.lock:
            self.inside[camera] = self.inside.get(camera, 0) + 1
            self.inside["max"] = max(self.inside.get("max", 0), sum(v for k, v in self.inside.items() if k != "max"))
            self.log.append((self.index, camera, self.inside[camera]))
        try:
            time.sleep(0.005)  # long enough for another thread to come in if the service let it
            return self.inner(image)
        finally:
            with self.lock:
                self.inside[camera] -= 1


def marked_clips(clip: Path, folder: Path) -> list[Path]:
    """The clip once per camera, with the camera's number (times 80) in an 8x8 corner of every frame."""
    import cv2

    paths = []
    for number, _ in enumerate(CAMERAS):
        source = cv2.VideoCapture(str(clip))
        out = folder / f"cam{number}.avi"
        writer = None
        while True:
            ok, frame = source.read()
            if not ok:
                break
            frame[:8, :8] = 80 * number
            if writer is None:
                h, w = frame.shape[:2]
                writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"FFV1"), 10, (w, h))
            writer.write(frame)
        writer.release()
        source.release()
        paths.append(out)
    return paths


def config_for(folder: Path, clips: list[Path], workers: int, isolate: bool = False, *, cameras=CAMERAS):
    cameras = {
        name: {
            "source": str(path),
            "zones": {"walkway": WALKWAY},
            "lines": {"middle": MIDDLE},
            "motion": {"enabled": False},
        }
        for name, path in zip(CAMERAS, clips)
        if name in cameras
    }
    values = {"storage": {"path": str(folder / "data")}, "cameras": cameras, "workers": workers, "isolate": isolate}
    return watch_config_from_dict(values, base=folder)


def run_all(config, loader) -> tuple[dict[str, list[tuple]], dict[str, int]]:
    """Every frame of every camera through a started service: each camera's events (without times), its inferred frames."""
    service = Service(config, loader=loader, paced=False)
    service.start()
    try:
        for camera in service.cameras.values():
            deadline = time.monotonic() + 180
            while not (camera.state == "stopped" and not camera.ready) and time.monotonic() < deadline:
                time.sleep(0.05)
        time.sleep(0.5)  # the last frames leave the model
        events = {name: [] for name in service.cameras}
        for e in sorted(service.store.events(limit=10_000), key=lambda e: e.id):
            events[e.camera].append((e.type, e.zone, e.track_id, e.label, e.direction))
        inferred = {c.name: c.inferred for c in service.cameras.values()}
    finally:
        service.stop()
    return events, inferred


@pytest.fixture(scope="module")
def clips(clip, tmp_path_factory) -> list[Path]:
    return marked_clips(clip, tmp_path_factory.mktemp("cameras"))


@pytest.fixture(scope="module")
def one_thread(clips, predictor, tmp_path_factory):
    """The events of the three cameras with one inference thread: what more threads must give too."""
    return run_all(config_for(tmp_path_factory.mktemp("one"), clips, 1), lambda model: predictor)


def test_two_workers_infer_two_cameras_at_once_each_camera_in_order(clips, one_thread, tmp_path):
    log, lock, inside = [], threading.Lock(), {}
    copies = load_workers("nanodet-m", workers=2)
    loader = lambda model: [Watched(p, i, log, lock, inside) for i, p in enumerate(copies)]  # noqa: E731
    events, inferred = run_all(config_for(tmp_path, clips, 2), loader)

    assert inferred == dict.fromkeys(CAMERAS, 40)  # unpaced: every frame of every camera
    assert events == one_thread[0]  # the same events, camera by camera, as one thread gives
    assert sum(len(e) for e in events.values()) >= 3
    assert {index for index, _, _ in log} == {0, 1}  # both threads inferred
    assert all(depth == 1 for _, _, depth in log)  # never two frames of one camera at once
    assert inside["max"] == 2  # but two cameras at once


def test_one_camera_never_has_two_frames_in_the_model(clips, one_thread, tmp_path):
    log, lock, inside = [], threading.Lock(), {}
    copies = load_workers("nanodet-m", workers=2)
    loader = lambda model: [Watched(p, i, log, lock, inside) for i, p in enumerate(copies)]  # noqa: E731
    events, inferred = run_all(config_for(tmp_path, clips, 2, cameras=["left"]), loader)

    assert inferred == {"left": 40}
    assert all(depth == 1 for _, _, depth in log) and inside["max"] == 1  # a thread waits for the other
    assert events["left"] == one_thread[0]["left"]  # its tracker saw the frames in order


def test_isolated_workers_give_the_same_events(clips, one_thread, tmp_path):
    config = config_for(tmp_path, clips, 1, isolate=True)
    loaded = []
    events, inferred = run_all(config, lambda model: loaded.append(model_loader(config)(model)) or loaded[-1])
    assert len(loaded[0]) == 2  # one process, a thread for each of its two frame slots
    close_workers(loaded[0])
    assert inferred == dict.fromkeys(CAMERAS, 40)
    assert events == one_thread[0]


def test_the_config_says_how_the_model_infers(clips, tmp_path):
    assert "(2 copies inferring at once)" in config_for(tmp_path, clips, 2).summary_lines()[0]
    isolated = config_for(tmp_path, clips, 2, isolate=True).summary_lines()[0]
    assert "(inferring in 2 processes of their own)" in isolated
    assert "inferring" not in config_for(tmp_path, clips, 1).summary_lines()[0]
