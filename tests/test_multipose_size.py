"""MoveNet multi-pose takes its input size from the frame: a small frame is not blown up to 448."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgevision.models.movenet import MoveNetProcessor
from edgevision.zoo.assemble import load_predictor

# A person's box (x0, y0, x1, y1) in each photo, as movenet-multipose finds it at 448.
PEOPLE = {"person.jpg": (190, 100, 275, 375), "messi5.jpg": (76, 60, 399, 326), "basketball1.png": (34, 85, 165, 470)}


def close_person_frame(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """A 176x144 frame filled by the person: crop 0.9x their height at 176:144, then shrink."""
    x0, y0, x1, y1 = box
    height = 0.9 * (y1 - y0)
    width = height * 176 / 144
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left, top = int(max(0, cx - width / 2)), int(max(0, cy - height / 2))
    crop = image[top : int(cy + height / 2), left : int(cx + width / 2)]
    return cv2.resize(crop, (176, 144), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def multipose():
    return load_predictor("movenet-multipose", threads=2)


@pytest.mark.parametrize(
    ("frame", "tensor"),
    [((144, 176), (224, 256)), ((576, 768), (352, 448)), ((240, 320), (256, 320)), ((1080, 1920), (256, 448))],
)
def test_input_follows_the_frame(multipose, frame, tensor):
    x, _ = multipose.processor.preprocess(np.zeros((*frame, 3), np.uint8))
    assert x.shape == (1, *tensor, 3)


@pytest.mark.parametrize("name", sorted(PEOPLE))
def test_close_person_in_a_small_frame_is_found(multipose, samples_cache, name):
    frame = close_person_frame(cv2.imread(str(samples_cache[name])), PEOPLE[name])
    blown_up = MoveNetProcessor((448, 448), multiple_of=32, min_long_side=448)
    tensor, transform = blown_up.preprocess(frame)
    assert tensor.shape[2] == 448 and len(blown_up.decode(multipose.backend.run({"input:0": tensor}), transform)) == 0
    poses = multipose(frame)
    assert len(poses) == 1 and poses.scores[0] >= 0.3
    assert (poses.keypoints[0, :, 2] > 0.3).sum() >= 6


def test_large_frame_keeps_448_and_finds_the_pedestrians(multipose, first_frame):
    tensor, _ = multipose.processor.preprocess(first_frame)
    assert tensor.shape[1:3] == (352, 448)
    assert len(multipose(first_frame)) >= 2
