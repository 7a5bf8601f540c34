"""Track ids stay with their objects across frames, for boxes and for poses."""

from __future__ import annotations

import numpy as np

from edgevision.pipeline.tracking import Tracker, TrackerConfig
from edgevision.types import Detections, Poses, RawOutputs


def two_walkers(step: int, *, swap: bool = False) -> Detections:
    a = [50 + 5 * step, 100, 90 + 5 * step, 200]
    b = [400 - 5 * step, 300, 440 - 5 * step, 400]
    boxes = [b, a] if swap else [a, b]
    return Detections(boxes, [0.9, 0.8], [0, 0], ("person",))


def test_ids_follow_objects_whatever_their_order():
    tracker = Tracker(TrackerConfig(), fps=10)
    by_x = {}
    for step in range(20):
        out = tracker.update(two_walkers(step, swap=step % 2 == 1))
        assert len(out) == 2 and len(set(out.tracker_ids.tolist())) == 2
        for box, track_id in zip(out.xyxy, out.tracker_ids.tolist()):
            by_x.setdefault(track_id, []).append(box[1])  # y never changes per walker
    assert len(by_x) == 2
    assert all(len(set(ys)) == 1 for ys in by_x.values())


def test_empty_frames_and_raw_outputs():
    tracker = Tracker(TrackerConfig(), fps=10)
    empty = tracker.update(Detections.empty(("person",)))
    assert len(empty) == 0 and empty.tracker_ids is not None
    raw = RawOutputs({"x": np.zeros(3)})
    assert tracker.update(raw) is raw


def test_a_short_gap_keeps_the_id():
    tracker = Tracker(TrackerConfig(lost_seconds=2.0), fps=10)
    first = [tracker.update(two_walkers(s)[:1]).tracker_ids[0] for s in range(5)]
    for _ in range(5):
        tracker.update(Detections.empty(("person",)))
    after = tracker.update(two_walkers(10)[:1]).tracker_ids
    assert len(set(first)) == 1 and after.tolist() == [first[0]]


def test_poses_are_tracked_by_their_boxes():
    tracker = Tracker(TrackerConfig(), fps=10)
    names = ("head", "foot")
    ids = []
    for step in range(10):
        kps = np.array(
            [
                [[100 + 4 * step, 100, 0.9], [110 + 4 * step, 200, 0.9]],
                [[300 - 4 * step, 120, 0.9], [310 - 4 * step, 220, 0.9]],
            ],
            np.float32,
        )
        order = [1, 0] if step % 2 else [0, 1]
        out = tracker.update(Poses(kps[order], [0.9, 0.9][: len(order)], names, ((0, 1),)))
        ids.append({int(k[0, 1]): int(t) for k, t in zip(out.keypoints, out.tracker_ids)})
    assert all(d == ids[0] for d in ids) and len(set(ids[0].values())) == 2


def _gap_then_return(tracker: Tracker, *, rate: float, gap_seconds: float) -> tuple[int, int]:
    """One walker seen for 10 frames, unseen (walking on) for ``gap_seconds``, then seen again:
    (its id before, its id after)."""
    t = 0.0
    for step in range(10):
        before = tracker.update(two_walkers(step)[:1], time=t).tracker_ids[0]
        t += 1 / rate
    unseen = round(gap_seconds * rate)
    for _ in range(unseen):
        tracker.update(Detections.empty(("person",)), time=t)
        t += 1 / rate
    back = 10 + unseen  # where the walker is now
    tracker.update(two_walkers(back)[:1], time=t)  # a new track shows from its second frame
    return before, tracker.update(two_walkers(back + 1)[:1], time=t + 1 / rate).tracker_ids[0]


def test_a_lost_track_lives_lost_seconds_at_the_rate_frames_really_come():
    # built for 10 fps, fed 25 fps: 2 s is 50 frames here, not 20
    tracker = Tracker(TrackerConfig(lost_seconds=2.0), fps=10)
    before, after = _gap_then_return(tracker, rate=25, gap_seconds=1.5)
    assert tracker.lost_frames == 50 and after == before
    # fed 4 fps: 2 s is 8 frames, so a 3 s gap retires the id
    tracker = Tracker(TrackerConfig(lost_seconds=2.0), fps=10)
    before, after = _gap_then_return(tracker, rate=4, gap_seconds=3.0)
    assert tracker.lost_frames == 8 and after != before


def test_without_times_or_when_time_restarts_the_rate_stays_the_one_given():
    tracker = Tracker(TrackerConfig(lost_seconds=2.0), fps=10)
    assert tracker.lost_frames == 20
    tracker.update(Detections.empty(("person",)))
    tracker.update(Detections.empty(("person",)), time=5.0)
    tracker.update(Detections.empty(("person",)), time=0.0)  # a looping file starts again
    assert tracker.lost_frames == 20
