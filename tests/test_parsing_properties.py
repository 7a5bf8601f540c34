"""Properties of the text a user types for zones, lines, thread counts and variants.

Any text either parses into something valid or raises ``EdgevisionError`` (never another
exception), and every valid spec reads back as the values it was written from.
"""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from edgevision.benchmark.data import parse_threads
from edgevision.benchmark.variants import KINDS, parse_variant_keys
from edgevision.checks import MAX_THREADS
from edgevision.errors import EdgevisionError
from edgevision.pipeline.zones import DIRECTIONS, Line, Zone, parse_line, parse_zone

# Text built from the characters these specs are made of, so that near-misses are common.
SPEC_TEXT = st.text(alphabet=st.sampled_from("az_.-:,0123456789 e+-.nNiIfF\n\t:inoutboth"), max_size=60)
ANY_TEXT = st.one_of(st.text(max_size=60), SPEC_TEXT)
NAMES = st.text(alphabet=st.sampled_from("abcXYZ019_.-"), min_size=1, max_size=12)
FRACTIONS = st.floats(min_value=0, max_value=1, allow_nan=False)
PIXELS = st.integers(min_value=0, max_value=4000).map(float)
FRAMES = st.tuples(st.integers(1, 4000), st.integers(1, 4000))


def _number(value: float) -> str:
    return repr(value)  # repr of a float reads back as the same float


def _valid_zone(zone: Zone) -> None:
    assert len(zone.points) >= 3
    assert all(math.isfinite(v) for point in zone.points for v in point)
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", zone.name)


def _valid_line(line: Line) -> None:
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", line.name)
    assert line.start != line.end
    assert line.direction in DIRECTIONS
    assert all(math.isfinite(v) for v in (*line.start, *line.end))


@settings(max_examples=400)
@given(ANY_TEXT, FRAMES)
@example("door:nan,0,1,1,0,1", (640, 480))
@example("door:0,0,1e999,1,0,1", (640, 480))
@example("door:0,0,0,0,0,0", (640, 480))
@example("door\n:0.1,0.1,0.9,0.1,0.5,0.9", (640, 480))
@example("door:1e300,0,0,1e300,5,5", (640, 480))
def test_any_text_is_a_zone_or_one_error(text, frame):
    try:
        zone = parse_zone(text)
    except EdgevisionError:
        return
    _valid_zone(zone)
    width, height = frame
    try:
        pixels = zone.pixels(width=width, height=height)
    except EdgevisionError:
        return
    assert ((pixels >= 0) & (pixels <= [width, height])).all()


@settings(max_examples=400)
@given(ANY_TEXT, FRAMES)
@example("gate:0,0,inf,1", (640, 480))
@example("gate:0,0,0,0", (640, 480))
@example("gate:0,0,1,1:sideways", (640, 480))
@example("gate:0,0,1,1:in:out", (640, 480))
def test_any_text_is_a_line_or_one_error(text, frame):
    try:
        line = parse_line(text)
    except EdgevisionError:
        return
    _valid_line(line)
    width, height = frame
    try:
        pixels = line.pixels(width=width, height=height)
    except EdgevisionError:
        return
    assert ((pixels >= 0) & (pixels <= [width, height])).all()


@given(
    NAMES,
    st.lists(st.tuples(PIXELS, PIXELS), min_size=3, max_size=8)
    | st.lists(st.tuples(FRACTIONS, FRACTIONS), min_size=3, max_size=8),
)
def test_a_zone_reads_back_as_written(name, points):
    text = f"{name}:" + ",".join(_number(v) for point in points for v in point)
    try:
        zone = parse_zone(text)
    except EdgevisionError as exc:
        assert "no area" in str(exc)  # the one refusal of well-formed points: all on one line
        return
    assert zone.name == name
    assert zone.points == tuple(points)


@given(NAMES, st.tuples(PIXELS, PIXELS), st.tuples(PIXELS, PIXELS), st.sampled_from((None, *DIRECTIONS)))
def test_a_line_reads_back_as_written(name, start, end, direction):
    text = f"{name}:{_number(start[0])},{_number(start[1])},{_number(end[0])},{_number(end[1])}"
    text += f":{direction}" if direction else ""
    if start == end:
        with pytest.raises(EdgevisionError, match="same point"):
            parse_line(text)
        return
    line = parse_line(text)
    assert (line.name, line.start, line.end, line.direction) == (name, start, end, direction or "both")


@settings(max_examples=400)
@given(ANY_TEXT)
@example("1,,2")
@example("0")
@example("-1")
@example("1_0")
@example("9" * 5000)
@example(str(MAX_THREADS + 1))
def test_any_text_is_thread_counts_or_one_error(text):
    try:
        counts = parse_threads(text)
    except EdgevisionError:
        return
    assert counts and all(isinstance(n, int) and 1 <= n <= MAX_THREADS for n in counts)
    assert len(set(counts)) == len(counts)


@given(st.lists(st.integers(1, MAX_THREADS), min_size=1, max_size=6))
def test_thread_counts_read_back_as_written(counts):
    assert parse_threads(",".join(map(str, counts))) == tuple(dict.fromkeys(counts))


@settings(max_examples=300)
@given(st.one_of(ANY_TEXT, st.lists(st.sampled_from(sorted(KINDS)) | st.text(max_size=8)).map(",".join)))
def test_any_text_is_variant_keys_or_one_error(text):
    try:
        keys = parse_variant_keys(text)
    except EdgevisionError:
        return
    assert all(key in KINDS for key in keys)
    assert len(set(keys)) == len(keys)


@given(st.lists(st.sampled_from(sorted(KINDS)), max_size=6))
def test_variant_keys_read_back_as_written(keys):
    assert parse_variant_keys(" , ".join(keys)) == list(dict.fromkeys(keys))
