"""Task-level agreement and tensor fidelity metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgevision.compare import (
    coco_ap_against_ground_truth,
    detection_agreement,
    pose_agreement,
    tensor_agreement,
)
from edgevision.models.coco import COCO17_EDGES, COCO17_KEYPOINTS
from edgevision.types import Detections, Poses

BOXES = Detections([[10, 10, 50, 80], [100, 100, 200, 220]], [0.9, 0.8], [0, 2])
EMPTY = Detections.empty()


def _pose(moved: float = 0.0, names=COCO17_KEYPOINTS, count: int = 1) -> Poses:
    rng = np.random.default_rng(0)
    xy = rng.uniform(100, 300, (1, len(names), 2))
    xy[0, :count] += moved
    kps = np.concatenate([xy, np.full((1, len(names), 1), 0.9)], axis=-1)
    return Poses(kps, [0.9], names, COCO17_EDGES if len(names) == 17 else ())


@pytest.mark.parametrize(
    "reference, candidate, expected",
    [
        ([BOXES], [BOXES], 1.0),
        ([EMPTY], [EMPTY], 1.0),  # nothing to find, nothing found
        ([EMPTY], [BOXES], 0.0),  # everything found is invented
        ([BOXES], [EMPTY], 0.0),  # everything is missed
        ([BOXES], [Detections(BOXES.xyxy, BOXES.scores, [1, 1])], 0.0),  # wrong classes
    ],
)
def test_detection_agreement_table(reference, candidate, expected):
    assert detection_agreement(reference, candidate) == pytest.approx(expected)


def test_shifted_boxes_agree_less():
    shifted = Detections(BOXES.xyxy + 6, BOXES.scores, BOXES.class_ids)
    value = detection_agreement([BOXES], [shifted])
    assert 0.0 < value < 0.9


def test_invented_object_on_an_empty_image_costs_agreement():
    invented = Detections([[300, 300, 350, 380]], [0.95], [0])
    assert detection_agreement([BOXES, EMPTY], [BOXES, invented]) < 1.0


def test_weak_reference_objects_are_not_ground_truth():
    weak = Detections([[10, 10, 50, 80]], [0.2], [0])
    assert detection_agreement([weak], [EMPTY]) == 1.0
    assert detection_agreement([weak], [weak]) == 1.0


def test_pose_agreement_identical_moved_and_empty():
    assert pose_agreement([_pose()], [_pose()]) == pytest.approx(1.0)
    assert pose_agreement([_pose()], [_pose(moved=40)]) < 1.0
    empty = Poses.empty(COCO17_KEYPOINTS, COCO17_EDGES)
    assert pose_agreement([empty], [empty]) == 1.0
    assert pose_agreement([empty], [_pose()]) == 0.0
    assert pose_agreement([_pose()], [empty]) == 0.0


def test_pose_agreement_other_skeletons_use_a_uniform_sigma():
    names = tuple(f"k{i}" for i in range(33))
    assert pose_agreement([_pose(names=names)], [_pose(names=names)]) == pytest.approx(1.0)
    assert pose_agreement([_pose(names=names)], [_pose(moved=40, names=names, count=8)]) < 1.0


def test_tensor_agreement_identical_and_noisy():
    x = {"y": np.linspace(-1, 1, 100, dtype=np.float32)}
    same = tensor_agreement(x, x)["y"]
    assert math.isinf(same["sqnr_db"]) and same["max_abs"] == 0 and same["cosine"] == pytest.approx(1.0)
    noisy = tensor_agreement(x, {"y": x["y"] + 0.01})["y"]
    assert 20 < noisy["sqnr_db"] < 60 and noisy["max_abs"] == pytest.approx(0.01, rel=1e-3)


def test_coco_ap_against_ground_truth_maps_names_to_category_ids():
    gt = {
        "images": [{"id": 7, "width": 400, "height": 400}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "bbox": [10, 10, 40, 70], "area": 2800, "iscrowd": 0}
        ],
        "categories": [{"id": 1, "name": "person"}],
    }
    good = Detections([[10, 10, 50, 80]], [0.9], [0], ("person",))
    bad = Detections([[200, 200, 250, 280]], [0.9], [0], ("person",))
    assert coco_ap_against_ground_truth([good], gt, [7])["map"] == pytest.approx(1.0)
    assert coco_ap_against_ground_truth([bad], gt, [7])["map"] == pytest.approx(0.0)
