"""The motion gate on synthetic frames: still scenes stay quiet, movement passes, keyframes still come."""

from __future__ import annotations

import numpy as np
import pytest

from edgevision.watch.config import MotionConfig
from edgevision.watch.motion import MotionGate

FPS = 10


def scene(x: int | None, *, noise: int = 0, seed: int = 0) -> np.ndarray:
    """A grey 640x480 frame with a textured floor, a dark 60x120 'person' at ``x`` (None: nobody)."""
    rng = np.random.default_rng(seed)
    image = np.full((480, 640, 3), 120, np.uint8)
    image[240:, :] = 90
    if noise:
        image = np.clip(image.astype(int) + rng.integers(-noise, noise + 1, image.shape), 0, 255).astype(np.uint8)
    if x is not None:
        image[300:420, x : x + 60] = 20
    return image


def gate_run(gate: MotionGate, frames: list[np.ndarray]) -> list[bool]:
    return [gate.check(frame, now=i / FPS) for i, frame in enumerate(frames)]


def test_a_still_scene_passes_only_keyframes():
    gate = MotionGate(MotionConfig(keyframe_s=2.0))
    passed = gate_run(gate, [scene(100, noise=4, seed=i) for i in range(60)])  # 6 s of sensor noise
    assert [i for i, p in enumerate(passed) if p] == [0, 20, 40]  # the first frame, then every 2 s
    assert gate.motion_fraction < 0.05


def test_a_moving_square_passes_every_frame():
    gate = MotionGate(MotionConfig(keyframe_s=100.0))
    gate_run(gate, [scene(None)] * 5)
    passed = gate_run(gate, [scene(50 + 8 * i) for i in range(30)])  # 8 px a frame: a walk
    assert all(passed)
    assert gate.motion_fraction > 0.8


def test_movement_then_stillness_goes_quiet_again():
    gate = MotionGate(MotionConfig(keyframe_s=100.0))
    gate_run(gate, [scene(50 + 8 * i) for i in range(20)])
    passed = gate_run(gate, [scene(210)] * 200)  # the person stops: soon part of the background
    assert not any(passed[-100:])


def test_disabled_passes_everything():
    gate = MotionGate(MotionConfig(enabled=False))
    assert all(gate_run(gate, [scene(100)] * 10))


@pytest.mark.parametrize("area", [0.2, 1.0])
def test_a_small_change_below_min_area_is_not_motion(area):
    gate = MotionGate(MotionConfig(keyframe_s=100.0, min_area=area))
    gate_run(gate, [scene(None)] * 3)
    assert gate_run(gate, [scene(100)]) == [False]
