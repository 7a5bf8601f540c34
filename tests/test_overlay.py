"""The overlay: text sized to the frame, box labels apart, the legend of counts, pose boxes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edgevision.annotate import draw, draw_detections, place_labels, text_style
from edgevision.pipeline.overlay import LegendRow, draw_legend, legend_rows
from edgevision.types import Detections, Poses


def _crowd(n: int, *, top: int = 100) -> np.ndarray:
    """``n`` boxes, each a few pixels right of the previous one, all overlapping."""
    return np.array([[100 + 4 * i, top + 2 * i, 150 + 4 * i, top + 120 + 2 * i] for i in range(n)], dtype=np.float32)


def _disjoint(a, b) -> bool:
    return a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


@pytest.mark.parametrize(
    ("boxes", "frame_wh"),
    [
        (np.zeros((0, 4), np.float32), (768, 576)),
        (_crowd(1), (768, 576)),
        (_crowd(12), (768, 576)),
        (_crowd(12, top=0), (768, 576)),  # at the top edge: no room above
        (_crowd(8, top=150), (320, 240)),  # boxes running off the bottom of a small frame
    ],
    ids=["empty", "one", "crowd", "crowd-at-top", "small-frame"],
)
def test_labels_of_overlapping_boxes_do_not_overlap_and_stay_in_the_frame(boxes, frame_wh):
    style = text_style((frame_wh[1], frame_wh[0]), size=0.8)
    sizes = [style.size(f"#{i} person 0.9{i % 10}") for i in range(len(boxes))]
    rects = place_labels(boxes, sizes, frame_wh)
    assert len(rects) == len(boxes)
    for a, b in itertools.combinations(rects, 2):
        assert _disjoint(a, b), (a, b)
    for (x1, y1, x2, y2), (w, h) in zip(rects, sizes):
        assert (x2 - x1, y2 - y1) == (w, h)
        assert min(x1, y1) >= 0 and x2 <= frame_wh[0] and y2 <= frame_wh[1]


def test_a_lone_label_sits_right_above_its_box():
    rects = place_labels(np.array([[100, 200, 160, 320]], np.float32), [(70, 20)], (768, 576))
    assert rects == [(100, 180, 170, 200)]


@pytest.mark.parametrize("shapes", [[(240, 320), (576, 768), (1080, 1920), (2160, 3840)]])
def test_text_grows_with_the_frame(shapes):
    styles = [text_style(shape) for shape in shapes]
    heights = [style.size("no-entry-lawn: 0 inside")[1] for style in styles]
    assert all(a.scale < b.scale for a, b in itertools.pairwise(styles))
    assert all(a < b for a, b in itertools.pairwise(heights))
    assert heights[0] >= 14  # still readable at 320x240


def test_legend_rows_carry_the_counts_given():
    rows = legend_rows({"lawn": 3, "gate": 0}, {"path": {"in": 5, "out": 6}, "door": {}})
    assert [r.text for r in rows] == ["lawn: 3 inside", "gate: 0 inside", "path: 5 in, 6 out", "door: 0 in, 0 out"]
    assert rows[0].bgr != rows[1].bgr  # an occupied zone is coloured as alerting


@pytest.mark.parametrize("shape", [(240, 320, 3), (576, 768, 3), (1080, 1920, 3)])
def test_legend_is_drawn_in_the_top_left_corner_only(shape):
    image = np.full(shape, 200, np.uint8)
    draw_legend(image, [LegendRow("lawn: 3 inside", (0, 0, 255)), LegendRow("path: 5 in, 6 out", (255, 200, 0))])
    changed = np.argwhere((image != 200).any(axis=2))
    assert len(changed)
    assert changed[:, 0].max() < shape[0] // 2 and changed[:, 1].max() < shape[1] // 2


def test_legend_text_differs_when_the_counts_differ():
    images = [np.full((576, 768, 3), 90, np.uint8) for _ in range(2)]
    draw_legend(images[0], legend_rows({"lawn": 0}, {"path": {"in": 5, "out": 6}}))
    draw_legend(images[1], legend_rows({"lawn": 0}, {"path": {"in": 5, "out": 7}}))
    assert not np.array_equal(images[0], images[1])


def test_no_rows_no_legend():
    image = np.full((240, 320, 3), 90, np.uint8)
    draw_legend(image, [])
    assert (image == 90).all()


EDGES = ((0, 1),)


def _poses(xyxy) -> Poses:
    keypoints = np.zeros((1, 2, 3), np.float32)  # scores 0: no skeleton is drawn
    return Poses(keypoints, np.array([0.9], np.float32), ("a", "b"), EDGES, xyxy)


@pytest.mark.parametrize(
    "prediction",
    [Detections.empty(("person",)), Poses.empty(("a", "b"), EDGES)],
    ids=["detections", "poses"],
)
def test_nothing_found_leaves_the_image_as_it_was(prediction):
    image = np.full((240, 320, 3), 90, np.uint8)
    out = draw(image, prediction)
    assert out is not image and np.array_equal(out, image)


def test_a_pose_with_a_box_draws_its_box_and_label():
    image = np.full((240, 320, 3), 90, np.uint8)
    out = draw(image, _poses(np.array([[100, 80, 200, 220]], np.float32)))
    assert (out[150, 100] != 90).any() and (out[150, 200] != 90).any()  # left and right edges
    assert (out[60:80, 100:200] != 90).any()  # the label above the box
    assert (out[150, 150] == 90).all()  # inside is left alone


def test_a_pose_without_a_box_draws_none():
    image = np.full((240, 320, 3), 90, np.uint8)
    assert np.array_equal(draw(image, _poses(None)), image)


def test_detections_draw_every_label_with_its_box():
    image = np.full((576, 768, 3), 90, np.uint8)
    boxes = _crowd(6)
    out = draw_detections(image, Detections(boxes, np.full(6, 0.9), np.zeros(6), ("person",), np.arange(6)))
    assert (out[100:120, 100] != 90).any()
    assert (out[: int(boxes[:, 1].min())] != 90).any()  # labels above the crowd
