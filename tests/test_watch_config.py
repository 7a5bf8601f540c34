"""The ``edgevision watch`` config: defaults, every refusal as one sentence with its key path, ``--check``."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import assert_clean_error, run_cli
from edgevision import api
from edgevision.errors import EdgevisionError
from edgevision.pipeline.zones import Line, Zone
from edgevision.watch.config import WatchConfig, WatchConfigError, key_path, watch_config_from_dict

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "watch.yaml"
SQUARE = [[0.1, 0.5], [0.9, 0.5], [0.9, 1.0], [0.1, 1.0]]


def config_of(tmp_path: Path, **camera) -> WatchConfig:
    return watch_config_from_dict({"cameras": {"garden": {"source": "0", **camera}}}, base=tmp_path)


def problems_of(values: dict, base: Path) -> list[str]:
    with pytest.raises(WatchConfigError) as caught:
        watch_config_from_dict(values, base=base)
    return caught.value.problems


def test_defaults_for_every_optional_key(tmp_path):
    config = config_of(tmp_path)
    camera = config.cameras["garden"]
    assert (config.model, config.web.bind, config.web.port) == ("nanodet-m", "127.0.0.1", 8971)
    assert config.storage.path == tmp_path / "watch-data"  # relative to the config's folder
    assert (config.storage.retain_days, config.storage.max_bytes) == (7, 5_000_000_000)
    assert config.storage.min_free_bytes == 500_000_000
    assert (camera.loop, camera.zones, camera.lines, camera.motion.enabled) == (False, {}, {}, True)
    assert (camera.rules.classes, camera.rules.dwell_s, camera.source_kind) == (["person"], None, "camera")
    assert config.model_of("garden") == "nanodet-m"


def test_zones_and_lines_become_the_pipelines_own_types(tmp_path):
    config = config_of(
        tmp_path,
        zones={"lawn": SQUARE},
        lines={"path": {"points": [[0.5, 0], [0.5, 1]], "direction": "in"}},
        rules={"classes": ["person", "dog"], "dwell_s": 5},
    )
    (zone,), (line,) = config.cameras["garden"].zone_objects(), config.cameras["garden"].line_objects()
    assert zone == Zone("lawn", tuple(map(tuple, SQUARE)), dwell_seconds=5, classes=("person", "dog"))
    assert line == Line("path", (0.5, 0.0), (0.5, 1.0), direction="in", classes=("person", "dog"))
    assert zone.pixels(width=200, height=100).tolist() == [[20, 50], [180, 50], [180, 100], [20, 100]]


def _camera(**settings) -> dict:
    return {"cameras": {"garden": {"source": "0", **settings}}}


BAD = [
    (
        _camera(zones={"lawn": [[0.1, 0.5], [0.9, 0.5]]}),
        "cameras.garden.zones.lawn: a zone needs at least 3 points, got 2",
    ),
    (
        _camera(zones={"lawn": [[0, 0], [0.5, 0.5], [1, 1]]}),
        "cameras.garden.zones.lawn: the zone's points lie on one line",
    ),
    (
        _camera(zones={"lawn": [[0.1, 1.5], [0.9, 0.5], [0.9, 1]]}),
        "cameras.garden.zones.lawn[0][1]: coordinates are fractions",
    ),
    (_camera(zones={"lawn": [[0.1, "x"], [0.9, 0.5], [0.9, 1]]}), "cameras.garden.zones.lawn[0][1]: expected a number"),
    (
        _camera(lines={"path": {"points": [[0, 0], [1, 1], [1, 0]]}}),
        "cameras.garden.lines.path.points: a line needs exactly 2 points, got 3",
    ),
    (
        _camera(lines={"path": {"points": [[0, 0], [0, 0]]}}),
        "cameras.garden.lines.path.points: the line starts and ends at the same point",
    ),
    (
        _camera(lines={"path": {"points": [[0, 0], [1, 1]], "direction": "up"}}),
        "cameras.garden.lines.path.direction: must be 'both', 'in' or 'out'",
    ),
    (
        _camera(zones={"a": SQUARE}, lines={"a": {"points": [[0, 0], [1, 1]]}}),
        "cameras.garden: 'a' names both a zone and a line",
    ),
    (_camera(zones={"../x": SQUARE}), "cameras.garden.zones.../x: a name must start with a letter or digit"),
    ({"cameras": {"my cam": {"source": "0"}}}, "cameras.my cam: a name must start with a letter or digit"),
    (
        _camera(zone={"lawn": SQUARE}),
        "cameras.garden: unknown key 'zone'; the known keys are source, model, loop, zones, lines",
    ),
    (
        {**_camera(), "camera": {}},
        "unknown key 'camera'; the known keys are model, isolate, workers, storage, cameras, web",
    ),
    ({**_camera(), "web": {"port": 0}}, "web.port: must be greater than or equal to 1, got 0"),
    ({**_camera(), "web": {"port": 65536}}, "web.port: must be less than or equal to 65535, got 65536"),
    ({**_camera(), "web": {"bind": "not a host"}}, "web: bind must be an IP address or a host name"),
    (
        {**_camera(), "web": {"bind": "0.0.0.0"}},
        "web: binding 0.0.0.0 opens the web page to other machines, so it needs web.auth",
    ),
    ({**_camera(), "web": {"bind": "cams.example.org"}}, "web: binding cams.example.org opens the web page"),
    ({**_camera(), "web": {"auth": {}}}, "web.auth: give a token, a password_hash"),
    (
        {**_camera(), "web": {"auth": {"token": "tooShort"}}},
        "web.auth.token: a token needs at least 16 characters, got 8",
    ),
    ({**_camera(), "web": {"auth": {"password_hash": "hunter2"}}}, "web.auth.password_hash: expected a hash made by"),
    (
        {**_camera(), "web": {"auth": {"token": "t" * 20, "user": "me"}}},
        "web.auth: unknown key 'user'; the known keys are token, password_hash, session_hours",
    ),
    ({**_camera(), "storage": {"retain_days": 0}}, "storage.retain_days: must be greater than 0, got 0"),
    ({**_camera(), "storage": {"max_gb": -1}}, "storage.max_gb: must be greater than 0, got -1"),
    (
        {**_camera(), "storage": {"min_free_gb": -0.5}},
        "storage.min_free_gb: must be greater than or equal to 0, got -0.5",
    ),
    (_camera(loop=True), "cameras.garden: loop: true is for video files only, and source 0 is a camera"),
    (
        {"cameras": {"garden": {"source": "rtsp://cam/1", "loop": True}}},
        "cameras.garden: loop: true is for video files only, and source rtsp://cam/1 is a stream",
    ),
    (_camera(motion={"enabled": "perhaps"}), "cameras.garden.motion.enabled: expected true or false"),
    (_camera(rules={"classes": []}), "cameras.garden.rules.classes: needs at least 1 entry, got 0"),
    (_camera(rules={"dwell_s": 0}), "cameras.garden.rules.dwell_s: must be greater than 0"),
    ({"cameras": {"garden": {"source": "sample:dog.jpg"}}}, "cameras.garden.source: unknown sample video 'dog.jpg'"),
    ({"cameras": {"garden": {"source": "clip.mp4"}}}, "cameras.garden.source: the video file"),
    ({"cameras": {"garden": {"source": "photos/"}}}, "cameras.garden.source: expected a video file, a camera"),
    ({"cameras": {"garden": {}}}, "cameras.garden.source: is required"),
    ({"cameras": {}}, "cameras: give at least one camera"),
    ({"model": "nanodet-m"}, "cameras: is required"),
    ({"cameras": None}, "cameras: expected a mapping of names to settings, got None"),
]


@pytest.mark.parametrize(("values", "expected"), BAD, ids=[e[:40] for _, e in BAD])
def test_each_mistake_is_one_sentence_naming_its_key(tmp_path, values, expected):
    problems = problems_of(values, tmp_path)
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected), problems[0]
    assert "\n" not in problems[0]


def test_every_problem_is_reported_at_once(tmp_path):
    values = {"web": {"port": 0}, "storage": {"max_gb": 0}, "cameras": {"a": {"source": "0", "zones": {"z": []}}}}
    with pytest.raises(WatchConfigError) as caught:
        watch_config_from_dict(values, base=tmp_path, where="cfg.yaml")
    assert len(caught.value.problems) == 3
    assert str(caught.value).splitlines()[0] == "cfg.yaml has 3 problems:"


@pytest.mark.parametrize("values", [None, [], "cameras", 3])
def test_a_config_that_is_not_a_mapping_is_refused(tmp_path, values):
    assert len(problems_of(values, tmp_path)) == 1


def test_paths_resolve_against_the_config_folder(tmp_path):
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "door.mp4").write_bytes(b"")
    (tmp_path / "my.onnx").write_bytes(b"")
    values = {
        "storage": {"path": "data"},
        "cameras": {"door": {"source": "clips/door.mp4", "loop": True, "model": "my.onnx"}},
    }
    config = watch_config_from_dict(values, base=tmp_path)
    assert config.storage.path == tmp_path / "data"
    assert config.cameras["door"].source == str(tmp_path / "clips" / "door.mp4")
    assert config.model_of("door") == str(tmp_path / "my.onnx")


def test_storage_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "data").write_text("")
    (problem,) = problems_of({"storage": {"path": "data"}, **_camera()}, tmp_path)
    assert problem.startswith("storage.path:") and "is a file" in problem


def test_a_stream_password_is_never_shown(tmp_path):
    config = config_of(tmp_path, source="rtsp://admin:hunter2@10.0.0.5:554/live", zones={"lawn": SQUARE})
    assert config.cameras["garden"].source_kind == "stream"
    assert "hunter2" not in "\n".join(config.summary_lines())
    (problem,) = problems_of(_camera(source="rtsp://admin:hunter2@cam/1", loop=True), tmp_path)
    assert "hunter2" not in problem and "admin:***@cam/1" in problem


@pytest.mark.parametrize("bind", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_this_machine_only_needs_no_login(tmp_path, bind):
    config = watch_config_from_dict({**_camera(), "web": {"bind": bind}}, base=tmp_path)
    assert config.web.loopback and config.web.auth is None


def test_a_secret_is_never_shown(tmp_path):
    problems = problems_of({**_camera(), "web": {"bind": "0.0.0.0", "auth": {"token": "tooShort"}}}, tmp_path)
    assert not any("tooShort" in p for p in problems)
    token = "a-long-enough-token-4711"
    config = watch_config_from_dict({**_camera(), "web": {"bind": "0.0.0.0", "auth": {"token": token}}}, base=tmp_path)
    summary = "\n".join(config.summary_lines())
    assert token not in summary and "web: http://0.0.0.0:8971/ (login: token)" in summary


def test_a_camera_number_written_as_a_number_is_a_camera(tmp_path):
    config = watch_config_from_dict({"cameras": {"desk": {"source": 0}}}, base=tmp_path)
    assert (config.cameras["desk"].source, config.cameras["desk"].source_kind) == ("0", "camera")


def test_check_api_finds_the_models(tmp_path):
    path = tmp_path / "watch.yaml"
    path.write_text(yaml.safe_dump({"model": "nanodet-m", "cameras": {"a": {"source": "0", "model": "no-such-model"}}}))
    with pytest.raises(WatchConfigError) as caught:
        api.check_watch_config(path)
    assert caught.value.problems[0].startswith("cameras.a.model: ")


def test_the_example_is_valid():
    config = api.check_watch_config(EXAMPLE)
    assert len(config.cameras) == 2 and all(c.loop for c in config.cameras.values())
    assert any(c.zones for c in config.cameras.values()) and any(c.lines for c in config.cameras.values())
    assert config.storage.path == EXAMPLE.parent / "watch-data"


def test_cli_check_prints_a_summary():
    done = run_cli("watch", EXAMPLE, "--check")
    assert done.returncode == 0, done.stderr
    for needle in ("2 cameras", "garden", "sample:vtest.avi", "lawn", "crossing", "nanodet-m", "watch-data"):
        assert needle in done.stdout


def test_cli_check_lists_every_problem_without_a_traceback(tmp_path):
    path = tmp_path / "watch.yaml"
    path.write_text("cameras:\n  garden:\n    source: 0\n    zones: {lawn: [[0.1, 0.5], [0.9, 0.5]]}\nweb: {port: 0}\n")
    done = run_cli("watch", path, "--check")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "cameras.garden.zones.lawn: a zone needs at least 3 points, got 2" in done.stderr
    assert "web.port: must be greater than or equal to 1, got 0" in done.stderr


def test_cli_refuses_bad_yaml_with_and_without_check(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras: [\n")
    assert_clean_error(run_cli("watch", bad, "--check"), "is not valid YAML")
    assert_clean_error(run_cli("watch", bad), "is not valid YAML")


def test_key_paths():
    assert key_path(("cameras", "a", "zones", "z", 2, 0)) == "cameras.a.zones.z[2][0]"
    assert key_path(()) == ""
    with pytest.raises(EdgevisionError):
        watch_config_from_dict({"cameras": {"a": {"source": "0", "loop": "no-such"}}}, base=Path("."))
