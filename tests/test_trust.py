"""Tracks and lines people can trust: a track keeps one class, and a line or zone border
fires only when the anchor is a margin beyond it for several frames in a row."""

from __future__ import annotations

import numpy as np
import pytest

from edgevision.errors import EdgevisionError
from edgevision.pipeline.rules import RuleConfig, RuleEngine
from edgevision.pipeline.tracking import ClassVotes, Tracker, TrackerConfig
from edgevision.pipeline.zones import Line, Zone, line_sides, zone_sides
from edgevision.types import Detections

NAMES = ("person", "bicycle", "car")
HEIGHT = 80  # box height of the synthetic people: the default margin is 8 px
LOOSE = RuleConfig(confirm_frames=1, cooldown_seconds=0.0)  # only the margin and settle_frames debounce

LINES = {
    "across": Line("gate", (0, 200), (400, 200)),  # walking down the image goes out
    "down": Line("gate", (200, 0), (200, 400)),  # walking right goes in
    "diagonal": Line("gate", (0, 0), (400, 400)),
}
NORMALS = {  # unit step from the line's in side to its out side
    "across": (0.0, 1.0),
    "down": (-1.0, 0.0),
    "diagonal": (-(0.5**0.5), 0.5**0.5),
}
ON_LINE = (200.0, 200.0)  # a point on all three


def person(track: int, x: float, y: float, *, class_id: int = 0) -> Detections:
    """One tracked object whose anchor (bottom centre) is at ``(x, y)``."""
    d = Detections([[x - 15, y - HEIGHT, x + 15, y]], [0.9], [class_id], NAMES)
    d.tracker_ids = np.array([track], np.int64)
    return d


def nobody() -> Detections:
    d = Detections.empty(NAMES)
    d.tracker_ids = np.zeros(0, np.int64)
    return d


def at_offsets(track: int, orientation: str, offsets) -> list[Detections]:
    """Frames of one track at signed distances ``offsets`` from the line (< 0: its in side)."""
    (x0, y0), (nx, ny) = ON_LINE, NORMALS[orientation]
    return [person(track, x0 + nx * o, y0 + ny * o) for o in offsets]


def fire(frames, *, zones=(), lines=(), config=LOOSE, fps=10.0):
    engine = RuleEngine(zones=zones, lines=lines, config=config, width=400, height=400)
    return [e for i, d in enumerate(frames) for e in engine.update(d, frame=i, time=i / fps)]


# -- lines ------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", list(LINES))
@pytest.mark.parametrize("seed", range(8))
def test_an_anchor_jittering_on_the_line_never_fires(orientation, seed):
    """A seated person: the anchor wanders within the margin (8 px) of the line for 30 s."""
    offsets = np.random.default_rng(seed).uniform(-7.5, 7.5, 300)
    assert fire(at_offsets(1, orientation, offsets), lines=(LINES[orientation],)) == []


@pytest.mark.parametrize("orientation", list(LINES))
@pytest.mark.parametrize("seed", range(8))
def test_short_excursions_beyond_the_margin_never_fire(orientation, seed):
    """Beyond the margin, but never for settle_frames (3) frames in a row on one side."""
    rng = np.random.default_rng(seed)
    runs = [(side * rng.uniform(9, 30, rng.integers(1, 3))).tolist() for side in rng.choice([-1, 1], 120)]
    offsets = [30.0] * 5 + [o for run in runs for o in [*run, 0.0]]  # back within the margin between runs
    assert fire(at_offsets(1, orientation, offsets), lines=(LINES[orientation],)) == []


@pytest.mark.parametrize("orientation", list(LINES))
@pytest.mark.parametrize("noise", [0.0, 6.0])
def test_a_clean_crossing_fires_once_per_direction(orientation, noise):
    """Out, wait, back in: one ``out`` then one ``in``, even with jitter while on the line."""
    rng = np.random.default_rng(0)
    walk = np.linspace(-60, 60, 25)
    there = [*walk, *(rng.uniform(-noise, noise, 30)), *walk[12:], *[60.0] * 20]
    back = there[::-1]
    events = fire(at_offsets(4, orientation, there + back), lines=(LINES[orientation],))
    assert [(e.type, e.direction, e.track_id) for e in events] == [("cross", "out", 4), ("cross", "in", 4)]


def test_a_crossing_fires_once_settled_and_not_before():
    config = RuleConfig(confirm_frames=1, settle_frames=4, cooldown_seconds=0.0)
    offsets = [-40.0] * 5 + [40.0] * 3  # three frames beyond the margin: not yet
    assert fire(at_offsets(1, "across", offsets), lines=(LINES["across"],), config=config) == []
    events = fire(at_offsets(1, "across", [*offsets, 40.0, 40.0]), lines=(LINES["across"],), config=config)
    assert [e.frame for e in events] == [8]


def test_a_wider_margin_swallows_a_short_step():
    offsets = [-20.0] * 10 + [20.0] * 10
    assert len(fire(at_offsets(1, "across", offsets), lines=(LINES["across"],))) == 1
    wide = RuleConfig(confirm_frames=1, cooldown_seconds=0.0, margin=0.0, margin_pixels=25.0)
    assert fire(at_offsets(1, "across", offsets), lines=(LINES["across"],), config=wide) == []


def test_the_first_side_seen_is_where_a_track_starts_not_a_crossing():
    assert fire(at_offsets(1, "across", [0.0] * 5 + [40.0] * 20), lines=(LINES["across"],)) == []


def test_beyond_the_ends_of_the_line_nothing_counts():
    frames = [person(1, 450 if i < 10 else 460, 150 if i < 10 else 250) for i in range(20)]
    line = Line("gate", (0, 200), (300, 200))
    assert fire(frames, lines=(line,), config=LOOSE) == []


def test_empty_frames_and_untracked_objects_fire_nothing():
    untracked = Detections([[0, 0, 10, 10]], [0.9], [0], NAMES)
    assert fire([nobody()] * 10 + [untracked] * 10, lines=(LINES["across"],), zones=(SQUARE,)) == []


# -- zones ------------------------------------------------------------------------------

SQUARE = Zone("box", ((100, 100), (300, 100), (300, 300), (100, 300)))


@pytest.mark.parametrize("seed", range(8))
def test_jitter_on_a_zone_border_enters_once_and_never_leaves(seed):
    """Standing on the top border (margin 8 px) for 30 s, with no cooldown to hide repeats."""
    ys = 100 + np.random.default_rng(seed).uniform(-7.5, 7.5, 300)
    engine = RuleEngine(zones=(SQUARE,), lines=(), config=LOOSE, width=400, height=400)
    events, inside = [], []
    for i, y in enumerate([60.0] * 5 + [110.0] * 3 + ys.tolist()):
        events += engine.update(person(1, 200, y), frame=i, time=i / 10)
        inside.append(engine.occupancy["box"])
    assert [e.type for e in events] == ["enter"] and inside[7:] == [1] * 301


def test_leaving_a_zone_needs_the_margin():
    inside, near, far = [person(1, 200, 200)] * 5, [person(1, 200, 95)] * 10, [person(1, 200, 90)] * 3
    assert [e.type for e in fire([*inside, *near, *inside], zones=(SQUARE,))] == ["enter"]
    assert [e.type for e in fire([*inside, *far, *inside], zones=(SQUARE,))] == ["enter", "enter"]


def test_entering_a_zone_needs_no_margin():
    frames = [person(1, 200, 50)] * 5 + [person(1, 200, 103)] * 3  # 3 px inside, margin 8 px
    assert [e.type for e in fire(frames, zones=(SQUARE,))] == ["enter"]


@pytest.mark.parametrize("inside_frames, fires", [(2, False), (3, True)])
def test_a_zone_entry_needs_settle_frames_inside(inside_frames, fires):
    frames = [person(1, 200, 50)] * 5 + [person(1, 200, 200)] * inside_frames + [person(1, 200, 50)] * 5
    assert [e.type for e in fire(frames, zones=(SQUARE,))] == (["enter"] if fires else [])


@pytest.mark.parametrize("outside_frames, enters", [(2, 1), (3, 2)])
def test_a_zone_exit_needs_settle_frames_outside(outside_frames, enters):
    inside, outside = [person(1, 200, 200)] * 5, [person(1, 200, 50)] * outside_frames
    frames = [person(1, 200, 50)] * 3 + inside + outside + inside
    assert [e.type for e in fire(frames, zones=(SQUARE,))] == ["enter"] * enters


def test_sides_of_no_points_are_empty():
    none = np.zeros((0, 2))
    assert line_sides(np.array([[0, 0], [9, 9]]), none, margins=np.zeros(0)).shape == (0,)
    assert zone_sides(np.array([[0, 0], [9, 0], [9, 9]]), none, margins=np.zeros(0)).shape == (0,)


def test_the_in_side_is_up_for_a_line_drawn_left_to_right():
    points = np.array([[200, 150], [200, 250]])
    assert line_sides(np.array([[0, 200], [400, 200]]), points, margins=np.full(2, 5.0)).tolist() == [-1, 1]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"settle_frames": 0}, "settle_frames must be 1 or more"),
        ({"confirm_frames": 0}, "confirm_frames must be 1 or more"),
        ({"margin": -0.1}, "margin must be 0 or more"),
        ({"margin_pixels": float("nan")}, "margin_pixels must be 0 or more"),
    ],
)
def test_bad_rule_settings_say_what_is_wrong(options, message):
    with pytest.raises(EdgevisionError, match=message):
        RuleConfig(**options)


# -- one class per track ----------------------------------------------------------------


@pytest.mark.parametrize(
    "classes, expected",
    [
        ([], []),
        ([0, 0, 0], [0, 0, 0]),
        ([0, 0, 0, 1, 1, 0, 0], [0] * 7),  # a short flip keeps the majority
        ([1, 0, 0, 0], [1, 1, 0, 0]),  # 1:1 is a tie, which keeps the class already held
        ([0, 1, 1], [0, 0, 1]),  # until the other class leads
        ([0, 1, 2, 1], [0, 0, 0, 1]),
    ],
)
def test_a_track_reports_its_majority_class(classes, expected):
    votes = ClassVotes()
    out = [int(votes.vote(np.array([3]), np.array([c]))[0]) for c in classes]
    assert out == expected


def test_votes_are_kept_per_track_and_forgotten_when_old():
    votes = ClassVotes()
    votes.vote(np.array([1, 2]), np.array([0, 1]), frame=1)
    assert votes.vote(np.array([2, 1]), np.array([0, 1]), frame=2).tolist() == [1, 0]
    assert votes.vote(np.array([], np.int64), np.array([], np.int64), frame=3).tolist() == []
    votes.forget(before=3)
    assert votes.vote(np.array([1]), np.array([2]), frame=4).tolist() == [2]


def test_the_tracker_and_its_events_keep_the_majority_class():
    """A person seen as a bicycle for three frames, right as it crosses the line."""
    tracker = Tracker(TrackerConfig(), fps=10)
    line = Line("gate", (0, 200), (400, 200))
    engine = RuleEngine(zones=(), lines=(line,), config=RuleConfig(), width=400, height=400)
    labels, events = set(), []
    for step in range(40):
        class_id = 1 if 6 <= step < 9 else 0  # the anchor passes y = 200 at step 4; the event fires at step 8
        raw = Detections([[185, 100 + 5 * step, 215, 180 + 5 * step]], [0.9], [class_id], NAMES)
        tracked = tracker.update(raw)
        labels |= {tracked.label(i) for i in range(len(tracked))}
        events += engine.update(tracked, frame=step, time=step / 10)
    assert labels == {"person"}
    assert [(e.type, e.frame, e.label) for e in events] == [("cross", 8, "person")]
