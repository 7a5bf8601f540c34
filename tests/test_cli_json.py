"""Scripts can use the CLI: tables in full when piped, one JSON document on stdout with --json."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import cv2
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import tiny_models
from conftest import assert_clean_error, run_cli
from edgevision import zoo

NARROW = {"COLUMNS": "80"}  # what rich assumes for a pipe; a narrow window must not cut piped tables
TINY_MACS = 16 * 16 * 8 * 3 * 3 * 3 + 8 * 4  # the 3x3 conv to 8 channels at 16x16, then the 8 -> 4 linear layer


def cells(line: str, rule: str = "│") -> list[str]:
    """The stripped cells of one table line (``rule`` "┃" for header lines)."""
    return [cell.strip() for cell in line.split(rule)[1:-1]]


def onnx_weights(path) -> int:
    """Weight elements of an ONNX file, counted here from its initializers (int64 shape constants excluded)."""
    model = onnx.load(str(path))
    return sum(numpy_helper.to_array(t).size for t in model.graph.initializer if t.data_type != onnx.TensorProto.INT64)


def json_cli(*args: str, env: dict | None = None):
    """Run the command; stdout must be exactly one JSON document."""
    done = run_cli(*args, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny model in fp32 ONNX, its dynamic-int8 quantization, and three images to score."""
    from edgevision.quantization import QuantizeOptions, get_quantizer

    folder = tmp_path_factory.mktemp("cli-json")
    fp32 = tiny_models.build_torch(folder)["onnx"]
    int8 = folder / "tiny-int8.onnx"
    get_quantizer("ort").quantize(fp32, int8, options=QuantizeOptions(precision="int8-dynamic"))
    images = folder / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(images / f"img{i}.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    return {"fp32": fp32, "int8": int8, "images": images, "folder": folder}


# ----------------------------------------------------------------------------- piped tables


def test_piped_zoo_list_shows_every_model_in_full():
    done = run_cli("zoo", "list", env=NARROW)  # stdout is a pipe here, as in `edgevision zoo list | cat`
    assert done.returncode == 0, done.stderr
    assert "…" not in done.stdout, done.stdout
    rows = {row[0]: row for row in map(cells, done.stdout.splitlines()) if len(row) == 6}
    names = zoo.list_models()
    assert set(names) <= set(rows), done.stdout
    for name in names:
        spec = zoo.get_spec(name)
        w, h = spec.input_size
        assert rows[name][1:4] == [spec.task, f"{w}x{h}", spec.license.split(":")[0]], rows[name]
        assert rows[name][4] in ("yes", "no", "user weights") and rows[name][5] == spec.summary, rows[name]


def test_piped_zoo_list_pattern_shows_full_names():
    done = run_cli("zoo", "list", "movenet-*", env=NARROW)
    listed = [row[0] for row in map(cells, done.stdout.splitlines()) if len(row) == 6 and row[0] != "name"]
    assert listed == zoo.list_models("movenet-*") == ["movenet-lightning", "movenet-multipose", "movenet-thunder"]


def test_piped_inspect_tables_are_not_cut(tiny):
    done = run_cli("inspect", tiny["int8"], env={"COLUMNS": "30"})
    assert done.returncode == 0, done.stderr
    assert "…" not in done.stdout, done.stdout
    ops = Counter(n.op_type for n in onnx.load(str(tiny["int8"])).graph.node)
    shown = {row[0]: row[1] for row in map(cells, done.stdout.splitlines()) if len(row) == 2}
    for op, count in ops.items():
        assert shown.get(op) == str(count), done.stdout


# ----------------------------------------------------------------------------- zoo --json


def test_zoo_list_json_holds_every_model():
    models, _ = json_cli("zoo", "list", "--json")
    assert [m["name"] for m in models] == zoo.list_models()
    for m in models:
        spec = zoo.get_spec(m["name"])
        assert m["task"] == spec.task and m["family"] == spec.family and m["licence"] == spec.license
        assert m["input_size"] == list(spec.input_size) and m["summary"] == spec.summary
        assert m["weights"] == ("user" if spec.build is not None else "registry package")
        if spec.build is None:
            assert m["cached"] is zoo.is_cached(spec.name)
    filtered, _ = json_cli("zoo", "list", "yolox-*", "--json")
    assert [m["name"] for m in filtered] == zoo.list_models("yolox-*") and "yolox-nano" in zoo.list_models("yolox-*")


def test_zoo_info_json_of_a_pulled_model():
    info, _ = json_cli("zoo", "info", "nanodet-m", "--json")
    spec = zoo.get_spec("nanodet-m")
    onnx_file = zoo.model_dir("nanodet-m") / "model.onnx"
    assert info["name"] == "nanodet-m" and info["cached"] is True and info["cache"] == str(zoo.model_dir("nanodet-m"))
    assert info["params"] == onnx_weights(onnx_file) and 3.7e6 < info["params"] < 3.8e6
    assert info["files"] == [
        {"file": "model.onnx", "format": "onnx", "size_bytes": onnx_file.stat().st_size, "params": info["params"]}
    ]
    graph = onnx.load(str(onnx_file), load_external_data=False).graph
    assert [t["name"] for t in info["inputs"]] == [v.name for v in graph.input] and info["inputs"][0]["shape"] == [
        1,
        3,
        416,
        416,
    ]
    assert [t["name"] for t in info["outputs"]] == [v.name for v in graph.output]
    assert [(p["file"], p["sha256"], p["version"]) for p in info["provenance"]] == [
        (a.filename, a.sha256, a.version) for a in spec.artifacts
    ]


def test_zoo_info_json_of_a_pytorch_family_agrees_with_the_text():
    info, _ = json_cli("zoo", "info", "yolox-nano", "--json")
    assert info["weights"] == "user" and info["flops"] == 2 * info["macs"] and info["flops_input"] == [1, 3, 416, 416]
    assert info["checkpoint"]["file"] == "yolox_nano.pth" and info["checkpoint"]["url"].startswith("https://")
    text = run_cli("zoo", "info", "yolox-nano").stdout
    assert f"{info['params'] / 1e6:.2f} M" in text and f"= {info['flops'] / 1e9:.2f} GFLOPs" in text, text
    assert 0.9e6 < info["params"] < 0.92e6


def test_json_error_is_one_sentence_and_stdout_stays_empty():
    done = run_cli("zoo", "info", "nanodet", "--json")
    assert_clean_error(done, "unknown model 'nanodet'")
    assert done.stdout == ""


# ----------------------------------------------------------------------------- inspect --json


def test_inspect_json_facts_match_the_onnx_file(tiny):
    report, _ = json_cli("inspect", tiny["fp32"], "--json")
    graph = onnx.load(str(tiny["fp32"])).graph
    assert report["format"] == "onnx" and report["size_bytes"] == tiny["fp32"].stat().st_size
    assert report["params"] == onnx_weights(tiny["fp32"]) == 8 * 27 + 8 + 4 * 8 + 4
    assert report["macs"] == TINY_MACS
    assert report["ops"] == dict(Counter(n.op_type for n in graph.node)) and report["nodes"] == len(graph.node)
    assert [(t["name"], t["shape"]) for t in report["inputs"]] == [("images", [1, 16, 16, 3])]
    assert [t["name"] for t in report["outputs"]] == [v.name for v in graph.output] == ["logits", "features"]
    assert report["precision"] == {"fp32": {"tensors": 4, "elements": report["params"], "bytes": 4 * report["params"]}}
    conv = report["largest_layers"][0]
    assert conv["op"] == "Conv" and conv["params"] == 8 * 27 + 8 and conv["macs"] == 16 * 16 * 8 * 27


def test_inspect_diff_json(tiny):
    diff, _ = json_cli("inspect", tiny["fp32"], "--diff", tiny["int8"], "--json")
    a, b = (onnx.load(str(tiny[k])).graph for k in ("fp32", "int8"))
    assert diff["from"]["file"] == str(tiny["fp32"]) and diff["to"]["file"] == str(tiny["int8"])
    assert diff["size_ratio"] == pytest.approx(tiny["int8"].stat().st_size / tiny["fp32"].stat().st_size)
    ops_a, ops_b = Counter(n.op_type for n in a.node), Counter(n.op_type for n in b.node)
    assert {row["op"]: (row["from"], row["to"]) for row in diff["ops"]} == {
        op: (ops_a[op], ops_b[op]) for op in ops_a | ops_b
    }
    names_a, names_b = ({n.name or n.output[0] for n in g.node} for g in (a, b))
    assert diff["added"] == sorted(names_b - names_a) and diff["removed"] == sorted(names_a - names_b)
    int8 = next(row for row in diff["precision"] if row["precision"] == "int8")
    assert int8["from"] == 0 and int8["to"] >= 8 * 27


def test_stray_prints_of_libraries_do_not_reach_the_json(tiny):
    code = (
        "import os, sys\n"
        "import edgevision.api as m\n"
        "real = m.inspect_model\n"
        "def noisy(*a, **k):\n"
        "    print('noise from python')\n"
        "    sys.stdout.flush()\n"
        "    os.system('echo noise from a child process')\n"
        "    return real(*a, **k)\n"
        "m.inspect_model = noisy\n"
        "from edgevision.cli import main\n"
        f"sys.argv = ['edgevision', 'inspect', {str(tiny['fp32'])!r}, '--json']\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["params"] == onnx_weights(tiny["fp32"])
    assert "noise from python" in done.stderr and "noise from a child process" in done.stderr


# ----------------------------------------------------------------------------- bench --json

QUICK = ("--variants", "ort-fp32", "--threads", "1", "--rounds", "1", "--seconds", "0.05", "--count", "3", "--no-peak")


@pytest.fixture(scope="module")
def bench_json(tiny):
    out = tiny["folder"] / "bench-json"
    done = run_cli("bench", tiny["fp32"], *QUICK, "--data", tiny["images"], "-o", out, "--json", env=NARROW)
    assert done.returncode == 0, done.stderr
    return done, out


def test_bench_json_is_the_results_record(bench_json, tiny):
    done, out = bench_json
    record = json.loads(done.stdout)
    assert record == json.loads((out / "results.json").read_text())
    assert record["model"] == str(tiny["fp32"]) and record["recommended"] == "ort-fp32"
    assert [v["variant"] for v in record["variants"]] == ["ort-fp32"]
    assert record["settings"]["threads"] == [1] and record["settings"]["timing"]["rounds"] == 1
    assert record["settings"]["data_images"] == 3 and record["compute"]["macs"] == TINY_MACS
    latency = record["variants"][0]["threads"]["1"]["latency"]
    assert latency["p50"] > 0 and latency["samples"] >= 1


def test_bench_json_sends_the_table_to_stderr_in_full(bench_json):
    done, _ = bench_json
    assert "recommended: ort-fp32" in done.stderr and "recommended:" not in done.stdout
    assert "…" not in done.stderr, done.stderr
    row = next(cells(line) for line in done.stderr.splitlines() if line.startswith("│ ort-fp32"))
    assert row[:2] == ["ort-fp32 ★", "1"] and all(row), row


def test_piped_bench_table_is_not_cut(tiny):
    out = tiny["folder"] / "bench-text"
    done = run_cli("bench", tiny["fp32"], *QUICK, "--data", tiny["images"], "-o", out, env=NARROW)
    assert done.returncode == 0, done.stderr
    assert "…" not in done.stdout, done.stdout
    header = " ".join(" ".join(cells(line, "┃")) for line in done.stdout.splitlines() if line.startswith("┃"))
    for word in ("variant", "threads", "pipeline", "agreement", "COCO AP", "peak"):
        assert word in header, done.stdout
    row = next(cells(line) for line in done.stdout.splitlines() if line.startswith("│ ort-fp32"))
    assert len(row) == 11 and all(row) and row[8] == "1.000", row
