"""Zone and line parsing, checks against the frame, and the debounced rules that fire events."""

from __future__ import annotations

import numpy as np
import pytest

from edgevision.errors import EdgevisionError
from edgevision.pipeline.rules import RuleConfig, RuleEngine
from edgevision.pipeline.zones import Line, Zone, check_geometry, parse_line, parse_zone
from edgevision.types import Detections, Poses

NAMES = ("person", "car")


@pytest.mark.parametrize(
    "text, points, normalised",
    [
        ("door:0.1,0.5,0.4,0.5,0.4,0.9", ((0.1, 0.5), (0.4, 0.5), (0.4, 0.9)), True),
        ("lawn:10,20,300,20,300,200,10,200", ((10, 20), (300, 20), (300, 200), (10, 200)), False),
        ("a_b-1.x: 1 , 2, 30,2 ,30,40", ((1, 2), (30, 2), (30, 40)), False),
    ],
)
def test_parse_zone(text, points, normalised):
    zone = parse_zone(text)
    assert zone.points == points and zone.normalised is normalised


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "must look like NAME"),
        ("nocolon", "must look like NAME"),
        (":1,2,3,4,5,6", "must look like NAME"),
        ("a:", "at least 3 points"),
        ("a:1,2,3,4", "at least 3 points"),
        ("a:1,2,3,4,5", "odd number"),
        ("a:1,2,x,4,5,6", "must be numbers"),
        ("bad name:1,2,3,4,5,6", "must look like NAME"),
    ],
)
def test_bad_zones_say_what_is_wrong(text, message):
    with pytest.raises(EdgevisionError, match=message):
        parse_zone(text)


@pytest.mark.parametrize(
    "text, message",
    [
        ("gate:0,1,2", "odd number"),
        ("gate:0,1,2,3,4,5", "exactly 2 points"),
        ("gate:0,1,2,3:sideways", "direction must be one of"),
        ("gate:5,5,5,5", "same point"),
        ("gate:0,1,2,3:in:x", "must look like"),
    ],
)
def test_bad_lines(text, message):
    with pytest.raises(EdgevisionError, match=message):
        parse_line(text)


def test_normalised_and_pixel_points_resolve_to_pixels():
    assert parse_zone("z:0,0,1,0,1,1").pixels(width=640, height=480).tolist() == [[0, 0], [640, 0], [640, 480]]
    assert parse_zone("z:0,0,2,0,2,2").pixels(width=640, height=480).tolist() == [[0, 0], [2, 0], [2, 2]]
    assert parse_line("l:0,0.5,1,0.5:out").pixels(width=100, height=50).tolist() == [[0, 25], [100, 25]]


@pytest.mark.parametrize("spec", ["z:0,0,900,0,900,100", "z:-5,0,10,0,10,10", "z:0,0,10,0,10,600"])
def test_zone_outside_the_frame_is_refused(spec):
    with pytest.raises(EdgevisionError, match="outside the 768x576 frame"):
        check_geometry((parse_zone(spec),), (), width=768, height=576)


def test_names_must_be_unique():
    with pytest.raises(EdgevisionError, match="used twice"):
        check_geometry((parse_zone("a:0,0,9,0,9,9"),), (parse_line("a:0,0,9,9"),), width=20, height=20)


# -- rules on synthetic tracks ---------------------------------------------------------

ZONE = Zone("box", ((100, 100), (200, 100), (200, 200), (100, 200)))


def tracked(*objects: tuple[int, float, float]) -> Detections:
    """People with track ids whose feet (bottom centre) are at ``(x, y)``."""
    if not objects:
        d = Detections.empty(NAMES)
        d.tracker_ids = np.zeros(0, np.int64)
        return d
    ids, xs, ys = zip(*objects)
    boxes = [[x - 10, y - 40, x + 10, y] for x, y in zip(xs, ys)]
    d = Detections(boxes, [0.9] * len(ids), [0] * len(ids), NAMES)
    d.tracker_ids = np.array(ids, np.int64)
    return d


def run_rules(frames: list[Detections], *, zones=(ZONE,), lines=(), config=RuleConfig(), fps=10.0):
    engine = RuleEngine(zones=zones, lines=lines, config=config, width=400, height=400)
    return [e for i, d in enumerate(frames) for e in engine.update(d, frame=i, time=i / fps)]


def walk(track: int, start: tuple[float, float], end: tuple[float, float], steps: int) -> list[Detections]:
    xs, ys = np.linspace(start[0], end[0], steps), np.linspace(start[1], end[1], steps)
    return [tracked((track, x, y)) for x, y in zip(xs, ys)]


def test_walking_through_a_zone_fires_one_enter():
    events = run_rules(walk(1, (20, 150), (380, 150), 40))
    assert [(e.type, e.zone, e.track_id) for e in events] == [("enter", "box", 1)]
    assert events[0].box[3] == pytest.approx(150, abs=1)


def test_empty_frames_fire_nothing():
    assert run_rules([tracked() for _ in range(20)]) == []


def test_jitter_on_the_border_fires_once():
    inside, outside = (150, 105), (150, 95)
    frames = [tracked((1, *outside))] * 5 + [tracked((1, *inside))] * 4
    frames += [tracked((1, *(inside if i % 2 else outside))) for i in range(60)]  # 6 s of flicker
    events = run_rules(frames)
    assert len(events) == 1


def test_without_debouncing_the_same_jitter_bursts():
    inside, outside = (150, 105), (150, 95)
    frames = [tracked((1, *outside))] * 5 + [tracked((1, *(inside if i % 2 else outside))) for i in range(40)]
    loose = RuleConfig(confirm_frames=1, settle_frames=1, cooldown_seconds=0)
    assert len(run_rules(frames, config=loose)) > 10  # what the debouncing is there to prevent


def test_unconfirmed_track_never_fires():
    frames = [tracked((7, 150, 150))] * 2 + [tracked() for _ in range(10)]
    assert run_rules(frames, config=RuleConfig(confirm_frames=3, settle_frames=1)) == []


def test_leaving_and_coming_back_later_fires_again():
    frames = walk(1, (150, 150), (150, 350), 20) + walk(1, (150, 350), (150, 150), 20)
    events = run_rules(frames, config=RuleConfig(cooldown_seconds=1.0))
    assert [e.type for e in events] == ["enter", "enter"]


def test_dwell_fires_once_after_the_time():
    zone = Zone("box", ZONE.points, dwell_seconds=2.0)
    frames = walk(1, (20, 150), (150, 150), 10) + [tracked((1, 150, 150))] * 50
    events = run_rules(frames, zones=(zone,))
    assert [e.type for e in events] == ["enter", "dwell"]
    assert events[1].dwell_seconds >= 2.0 and events[1].frame - events[0].frame >= 19


def test_zone_classes_filter():
    zone = Zone("box", ZONE.points, classes=("car",))
    assert run_rules(walk(1, (20, 150), (380, 150), 40), zones=(zone,)) == []


@pytest.mark.parametrize("direction, expected", [("both", ["out", "in"]), ("in", ["in"]), ("out", ["out"])])
def test_line_crossing_with_direction(direction, expected):
    line = Line("gate", (0, 200), (400, 200), direction=direction)
    frames = walk(3, (150, 100), (150, 300), 30) + walk(3, (150, 300), (150, 100), 30)
    events = run_rules(frames, zones=(), lines=(line,), config=RuleConfig(cooldown_seconds=0.5))
    assert [e.direction for e in events] == expected
    assert all(e.type == "cross" and e.zone == "gate" and e.track_id == 3 for e in events)


def test_poses_fire_through_their_boxes():
    names = ("a", "b")
    kps = np.array([[[145, 110, 0.9], [155, 150, 0.9]]], np.float32)
    frames = []
    for dx in np.linspace(-100, 100, 30):
        p = Poses(kps + [dx, 0, 0], [0.9], names, ((0, 1),))
        p.tracker_ids = np.array([5])
        frames.append(p)
    events = run_rules(frames)
    assert [(e.type, e.track_id, e.label) for e in events] == [("enter", 5, "person")]
