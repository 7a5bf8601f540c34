"""What the watch service's motion gate saves: model calls and CPU time on a still and a busy scene.

Both scenes go through the service itself (``Service`` with ``paced=False``: every frame of
the file, on the file's own clock, so the counts do not depend on the machine's speed),
once with the motion gate and once without, with a zone over the walkway and one model
loaded once for all runs. The STILL scene is one frame of the sample video repeated with
sensor noise; the BUSY scene is the sample video's first frames. Acceptance: on the still
scene the gate cuts model calls at least 5x; on the busy scene it misses no zone entry.

    python benchmarks/watch_motion.py --frames 200 --model nanodet-m
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgevision.samples import sample_path
from edgevision.watch.config import watch_config_from_dict
from edgevision.watch.service import Service
from edgevision.zoo.assemble import load_predictor

# The walkway: the lower 70% of the frame, where people walk. examples/watch.yaml's smaller
# lawn sees no entry in the video's first 200 frames, which would make the entry check empty.
ZONE = [[0.0, 0.3], [1.0, 0.3], [1.0, 1.0], [0.0, 1.0]]
FPS = 10.0  # the sample video's rate
# An entry seen with the gate counts as the same as one seen without when within this many
# seconds. Track ids may differ between the runs (a frame the gate held back shifts the
# tracker's ages), so entries are matched by their moment in the video; 0.5 s is 5 frames,
# well under the 2 s keyframe interval, so a late entry still shows.
TOLERANCE_S = 0.5
MIN_SAVING = 5.0  # the still scene's ungated calls over its gated calls


@dataclass
class Run:
    """One scene through the service, gated or not; ``entries`` are zone entries' video seconds."""

    scene: str
    gating: bool
    captured: int = 0
    inferred: int = 0
    cpu_s: float = 0.0
    entries: list[float] = field(default_factory=list)

    @property
    def calls_per_frame(self) -> float:
        return self.inferred / self.captured if self.captured else 0.0


def sample_frames(count: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(sample_path("vtest.avi")))
    frames = []
    while len(frames) < count and (read := cap.read())[0]:
        frames.append(read[1])
    cap.release()
    return frames


def write_video(path: Path, frames: list[np.ndarray]) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, frames[0].shape[1::-1])
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def still_frames(first: np.ndarray, count: int, *, sigma: float = 2.0, seed: int = 0) -> list[np.ndarray]:
    """``first`` again and again with Gaussian sensor noise, so no two frames are identical."""
    rng = np.random.default_rng(seed)
    base = first.astype(np.float32)
    return [np.clip(base + rng.normal(0, sigma, base.shape), 0, 255).astype(np.uint8) for _ in range(count)]


def scene_videos(folder: Path, count: int) -> dict[str, Path]:
    busy = sample_frames(count)
    return {
        "still": write_video(folder / "still.avi", still_frames(busy[0], len(busy))),
        "busy": write_video(folder / "busy.avi", busy),
    }


def run_scene(scene: str, video: Path, *, gating: bool, predictor, folder: Path, timeout: float = 3600) -> Run:
    """Every frame of ``video`` through the service; the CPU time of the whole process meanwhile."""
    run = Run(scene, gating)
    camera = {"source": str(video), "zones": {"walkway": ZONE}, "motion": {"enabled": gating}}
    values = {"storage": {"path": str(folder / f"{scene}-{gating}")}, "cameras": {"scene": camera}}
    config = watch_config_from_dict(values, base=folder)

    def on_event(name, event, frame) -> None:
        if event.type == "enter":
            run.entries.append(round(frame.time, 2))

    service = Service(config, loader=lambda model: predictor, paced=False, on_event=on_event)
    cpu = time.process_time()
    service.start()
    try:
        _wait_done(service, timeout)
    finally:
        service.stop()
    run.cpu_s = time.process_time() - cpu
    status = service.cameras_status()[0]
    run.captured, run.inferred = status["captured_frames"], status["inferred_frames"]
    return run


def _wait_done(service: Service, timeout: float) -> None:
    """Until the camera reached the file's end and the model took its last frame (stop then finishes it)."""
    camera = service.cameras["scene"]
    deadline = time.monotonic() + timeout
    while camera.state != "stopped" or camera.ready:
        if camera.state == "reconnecting" or time.monotonic() > deadline:
            raise RuntimeError(f"the camera did not read its file to the end (state {camera.state})")
        time.sleep(0.02)


def unmatched(expected: list[float], found: list[float], tolerance: float = TOLERANCE_S) -> list[float]:
    """The moments in ``expected`` with no moment of ``found`` within ``tolerance`` (each used once).

    >>> unmatched([1.0, 5.0, 9.0], [1.2, 9.9])
    [5.0, 9.0]
    """
    left, missing = sorted(found), []
    for moment in sorted(expected):
        near = [t for t in left if abs(t - moment) <= tolerance]
        if near:
            left.remove(min(near, key=lambda t: abs(t - moment)))
        else:
            missing.append(moment)
    return missing


def measure(frames: int, model: str, folder: Path) -> list[Run]:
    """Each scene gated and ungated, ``frames`` frames each."""
    predictor = load_predictor(model)
    videos = scene_videos(folder, frames)
    predictor(sample_frames(1)[0])  # the runtime's first call sets itself up: charge it to no run
    return [
        run_scene(scene, video, gating=gating, predictor=predictor, folder=folder)
        for scene, video in videos.items()
        for gating in (True, False)
    ]


def checks(runs: list[Run]) -> list[tuple[bool, str]]:
    """The acceptance bar: (passed, the line that says so)."""
    by = {(r.scene, r.gating): r for r in runs}
    still_on, still_off = by["still", True], by["still", False]
    saving = still_off.inferred / max(1, still_on.inferred)
    busy_on, busy_off = by["busy", True], by["busy", False]
    missed = unmatched(busy_off.entries, busy_on.entries)
    extra = unmatched(busy_on.entries, busy_off.entries)
    return [
        (saving >= MIN_SAVING, f"still scene: gating cuts model calls {saving:.1f}x (bar: >= {MIN_SAVING:g}x)"),
        (
            bool(busy_off.entries) and not missed and not extra,  # no entries at all would prove nothing
            f"busy scene: {len(busy_on.entries)} zone entries gated, {len(busy_off.entries)} ungated; "
            f"missed {missed or 'none'}, extra {extra or 'none'} (matched within {TOLERANCE_S:g} s)",
        ),
    ]


def table(runs: list[Run]) -> str:
    lines = [
        "| scene | gating | captured frames | inferred frames | inference calls / captured frame | CPU s | zone entries |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in runs:
        lines.append(
            f"| {r.scene} | {'on' if r.gating else 'off'} | {r.captured} | {r.inferred} | "
            f"{r.calls_per_frame:.3f} | {r.cpu_s:.1f} | {len(r.entries)} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200, help="frames per scene (default 200)")
    parser.add_argument("--model", default="nanodet-m")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        runs = measure(args.frames, args.model, Path(folder))
    print(f"model {args.model}, {args.frames} frames per scene, every frame processed (paced=False)\n")
    print(table(runs))
    print()
    results = checks(runs)
    for passed, line in results:
        print(f"{'PASS' if passed else 'FAIL'}: {line}")
    return 0 if all(passed for passed, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
