"""Single-pose MoveNet reports no person where there is none: a dog gets no skeleton."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgevision.models.movenet import single_pose_score
from edgevision.zoo.assemble import load_predictor


def _raw(ys: np.ndarray, xs: np.ndarray, scores: np.ndarray) -> np.ndarray:
    raw = np.zeros((1, 1, 17, 3), np.float32)
    raw[0, 0, :, 0], raw[0, 0, :, 1], raw[0, 0, :, 2] = ys, xs, scores
    return raw


@pytest.mark.parametrize(
    ("ys", "scores", "expected"),
    [
        (np.linspace(0.2, 0.8, 17), np.full(17, 0.5), 0.5),  # a spread-out person: the mean score
        (np.linspace(0.50, 0.55, 17), np.full(17, 0.5), 0.0),  # folded into a spot
        (np.linspace(0.2, 0.8, 17), np.r_[np.full(16, 0.1), 0.9], 0.0),  # one keypoint seen: no extent
        (np.linspace(0.2, 0.8, 17), np.zeros(17), 0.0),  # nothing seen
    ],
)
def test_single_pose_score(ys, scores, expected):
    got = single_pose_score(_raw(ys, np.full(17, 0.5), scores), min_extent=0.08)
    assert got.shape == (1,) and got[0] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("name", ["movenet-lightning", "movenet-thunder"])
def test_person_has_a_skeleton_and_dog_has_none(samples_cache, name):
    predictor = load_predictor(name, threads=2)
    person = predictor(cv2.imread(str(samples_cache["person.jpg"])))
    assert len(person) == 1 and person.scores[0] >= 0.3
    assert len(predictor(cv2.imread(str(samples_cache["dog.jpg"])))) == 0
