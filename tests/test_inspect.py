"""edgevision inspect: facts of a model file, weight precision after quantization, graph, diff."""

from __future__ import annotations

import shutil

import pytest

import tiny_models
from conftest import run_cli
from edgevision.inspect import diff_models, inspect_model

TINY_MACS = 16 * 16 * 8 * 3 * 3 * 3 + 8 * 4  # the 3x3 conv to 8 channels at 16x16, then the 8 -> 4 linear layer


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    """The tiny model in fp32 ONNX and its dynamic-int8 quantization by edgevision's ORT quantizer."""
    from edgevision.quantization import QuantizeOptions, get_quantizer

    folder = tmp_path_factory.mktemp("inspect")
    fp32 = tiny_models.build_torch(folder)["onnx"]
    int8 = folder / "tiny-int8.onnx"
    get_quantizer("ort").quantize(fp32, int8, options=QuantizeOptions(precision="int8-dynamic"))
    return {"fp32": fp32, "int8": int8}


def test_fp32_model_facts(tiny_files):
    report = inspect_model(tiny_files["fp32"])
    assert report.format == "onnx" and report.macs == TINY_MACS
    assert report.params == 8 * 27 + 8 + 4 * 8 + 4
    assert [s.name for s in report.inputs] == ["images"] and [s.name for s in report.outputs] == ["logits", "features"]
    assert report.ops["Conv"] == 1 and "int8" not in report.precision
    assert report.layers[0].op == "Conv" and report.layers[0].params == 8 * 27 + 8


def test_quantized_model_shows_int8_weights(tiny_files):
    report = inspect_model(tiny_files["int8"])
    assert report.precision["int8"]["elements"] >= 8 * 27  # the conv weights at least
    assert report.precision.get("fp32", {}).get("elements", 0) < report.precision["int8"]["elements"]


def test_diff_shows_what_quantization_changed(tiny_files):
    diff = diff_models(tiny_files["fp32"], tiny_files["int8"])
    changed = {op for op, _, _ in diff.ops_changed}
    assert changed and diff.added
    assert any(kind == "int8" and a == 0 and b > 0 for kind, a, b in diff.precision)


def test_diff_of_a_model_with_itself_is_empty(tiny_files):
    diff = diff_models(tiny_files["fp32"], tiny_files["fp32"])
    assert not diff.ops_changed and not diff.added and not diff.removed and diff.size_ratio == 1.0


def test_cli_inspect_and_diff(tiny_files):
    done = run_cli("inspect", tiny_files["int8"])
    assert done.returncode == 0, done.stderr
    assert "int8" in done.stdout and "largest layers" in done.stdout
    done = run_cli("inspect", tiny_files["fp32"], "--diff", tiny_files["int8"])
    assert done.returncode == 0, done.stderr
    assert "size ratio" in done.stdout and "op histogram" in done.stdout and "added" in done.stdout


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot is not installed (see tools/system-packages)")
@pytest.mark.parametrize("suffix", [".html", ".svg"])
def test_graph_is_drawn(tiny_files, tmp_path, suffix):
    out = tmp_path / f"graph{suffix}"
    done = run_cli("inspect", tiny_files["fp32"], "--graph", out)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "<svg" in text and "Conv" in text and "images" in text and "logits" in text
    assert text.count('<g id="node') >= 5  # input, conv ..., outputs


def test_inspect_bad_file_is_one_sentence(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a model")
    done = run_cli("inspect", bad)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "not a valid ONNX file" in done.stderr


def test_graph_needs_html_or_svg(tiny_files, tmp_path):
    done = run_cli("inspect", tiny_files["fp32"], "--graph", tmp_path / "graph.png")
    assert done.returncode == 2 and "--graph must end in .html, .htm or .svg" in " ".join(done.stderr.split())
