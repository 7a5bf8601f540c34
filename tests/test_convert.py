"""ONNX -> OpenVINO / TFLite / ncnn conversion and ONNX optimisation: parity, refusal, unsupported ops."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import run_cli
from edgevision.api import convert as convert_model
from edgevision.api import optimize as optimize_model
from edgevision.backends import create_backend
from edgevision.conversion.optimize import op_counts
from edgevision.errors import EdgevisionError
from edgevision.variants import read_meta


def _single_op_model(path, op: str, shape, extra_inputs=(), initializers=()):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    node = helper.make_node(op, ["x", *extra_inputs], ["y"], name=f"{op.lower()}0")
    graph = helper.make_graph([node], "g", [x], [y], list(initializers))
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def conv_bn_model(path):
    """Conv -> BatchNormalization -> Relu with an Identity: optimisation has work to do."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.normal(0, 0.1, 8).astype(np.float32), "b"),
        *(
            numpy_helper.from_array(v.astype(np.float32), n)
            for n, v in {
                "scale": rng.uniform(0.5, 1.5, 8),
                "bias": rng.normal(0, 0.1, 8),
                "mean": rng.normal(0, 0.1, 8),
                "var": rng.uniform(0.5, 1.5, 8),
            }.items()
        ),
    ]
    nodes = [
        helper.make_node("Identity", ["images"], ["x0"], name="identity"),
        helper.make_node("Conv", ["x0", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["n"], name="bn"),
        helper.make_node("Relu", ["n"], ["out"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 8, 32, 32])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture(scope="module")
def tiny_onnx(tiny_model_files):
    return tiny_model_files["onnxruntime"]


def test_tiny_to_openvino_keeps_numbers(tiny_onnx, tmp_path, samples_cache):
    result = convert_model(str(tiny_onnx), to="openvino", output=tmp_path / "tiny.xml")
    assert result.parity.passed
    assert (tmp_path / "tiny.xml").exists() and (tmp_path / "tiny.bin").exists()
    meta = read_meta(tmp_path / "tiny.xml")
    assert meta.runtime == "openvino" and meta.precision == "fp32" and meta.parity["passed"]
    assert {o["name"] for o in meta.parity["outputs"]} == {"logits", "features"}


def test_tiny_to_tflite_keeps_layout_names_and_numbers(tiny_onnx, tmp_path, tiny_input, samples_cache):
    result = convert_model(str(tiny_onnx), to="tflite", output=tmp_path / "tiny.tflite")
    assert result.parity.passed
    source, produced = create_backend(None, tiny_onnx), create_backend(None, result.path)
    assert [(s.name, s.shape) for s in produced.inputs] == [(s.name, s.shape) for s in source.inputs]
    assert sorted(s.name for s in produced.outputs) == ["features", "logits"]
    want, got = source.run({"images": tiny_input}), produced.run({"images": tiny_input})
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=1e-4)
    assert any("input_layout" in note for note in result.meta.notes)


def test_tiny_to_ncnn_keeps_names_shapes_and_numbers(tiny_onnx, tmp_path, tiny_input, samples_cache):
    result = convert_model(str(tiny_onnx), to="ncnn", output=tmp_path / "tiny.param")
    assert result.parity.passed
    meta = read_meta(tmp_path / "tiny.param")
    assert meta.runtime == "ncnn" and meta.precision == "fp32" and set(meta.files) == {"tiny.param", "tiny.bin"}
    source, produced = create_backend(None, tiny_onnx), create_backend(None, result.path)
    assert [(s.name, s.shape) for s in produced.inputs] == [(s.name, s.shape) for s in source.inputs]
    assert sorted((s.name, s.shape) for s in produced.outputs) == [("features", (1, 8)), ("logits", (1, 4))]
    want, got = source.run({"images": tiny_input}), produced.run({"images": tiny_input})
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=1e-5)
    assert result.parity.report.file_bytes == sum(f["bytes"] for f in meta.files.values())


def test_nchw_model_to_ncnn_keeps_channels_in_place(tmp_path, samples_cache):
    """ncnn blobs are CHW without batch: an NCHW input and output go through unchanged."""
    source = conv_bn_model(tmp_path / "convbn.onnx")  # IR version newer than pnnx's reader: lowered for it
    result = convert_model(str(source), to="ncnn", output=tmp_path / "convbn.param")
    onnx_run, ncnn_run = create_backend(None, source), create_backend(None, result.path)
    assert ncnn_run.inputs[0].shape == (1, 3, 32, 32) and ncnn_run.outputs[0].shape == (1, 8, 32, 32)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(ncnn_run.run({"images": x})["out"], onnx_run.run({"images": x})["out"], atol=1e-5)


def focus_stem_model(path):
    """YOLOX's stem as the zoo's export writes it: four step-2 Slices over H and W concatenated on
    channels, then a Conv (ncnn has no strided slice)."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.3, (4, 12, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(np.full(2, 2**31 - 1, np.int64), "ends"),
        numpy_helper.from_array(np.array([2, 3], np.int64), "axes"),
        numpy_helper.from_array(np.array([2, 2], np.int64), "steps"),
    ]
    nodes = []
    for k, start in enumerate([(0, 0), (1, 0), (0, 1), (1, 1)]):
        inits.append(numpy_helper.from_array(np.array(start, np.int64), f"starts{k}"))
        nodes.append(helper.make_node("Slice", ["images", f"starts{k}", "ends", "axes", "steps"], [f"s{k}"]))
    nodes += [
        helper.make_node("Concat", ["s0", "s1", "s2", "s3"], ["cat"], axis=1),
        helper.make_node("Conv", ["cat", "w"], ["out"], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 16, 24])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 8, 12])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_focus_stem_to_ncnn_runs_as_one_layer_run_after_run(tmp_path, samples_cache):
    source = focus_stem_model(tmp_path / "stem.onnx")
    result = convert_model(str(source), to="ncnn", output=tmp_path / "stem.param")
    kinds = [line.split()[0] for line in result.path.read_text().splitlines()[2:]]
    assert "YoloV5Focus" in kinds and "Tensor.slice" not in kinds
    onnx_run, ncnn_run = create_backend(None, source), create_backend(None, result.path)
    rng = np.random.default_rng(0)
    for _ in range(4):  # every run: a layer output that outlived its memory showed on some runs only
        x = rng.uniform(-1, 1, (1, 3, 16, 24)).astype(np.float32)
        np.testing.assert_allclose(ncnn_run.run({"images": x})["out"], onnx_run.run({"images": x})["out"], atol=1e-5)


@pytest.mark.slow
def test_nanodet_to_ncnn_agrees_at_task_level(tmp_path, samples_cache):
    result = convert_model("nanodet-m", to="ncnn", output=tmp_path / "nanodet.param")
    assert result.parity.agreement["value"] >= 0.99
    assert all(o.cosine > 0.9999 for o in result.parity.report.outputs)
    assert (tmp_path / "nanodet.bin").stat().st_size > 4_000_000  # fp32 weights


def test_unsupported_op_for_ncnn_names_op_and_saves_nothing(tmp_path):
    model = _single_op_model(tmp_path / "det.onnx", "Det", [2, 3, 3])
    with pytest.raises(EdgevisionError, match=r"ncnn has no layer for op\(s\) Det.*onnxruntime"):
        convert_model(str(model), to="ncnn", output=tmp_path / "out" / "det.param")
    assert not (tmp_path / "out").exists()


def test_tflite_file_to_onnx(tiny_model_files, tmp_path, samples_cache):
    result = convert_model(str(tiny_model_files["litert"]), to="onnx", output=tmp_path / "from-tflite.onnx")
    assert result.parity.passed and result.path.exists()
    assert result.parity.report.outputs  # compared against the .tflite itself


def test_nanodet_to_openvino_agrees_at_task_level(tmp_path, samples_cache):
    result = convert_model("nanodet-m", to="openvino", output=tmp_path / "nanodet.xml")
    assert result.parity.agreement["value"] >= 0.99
    assert all(o.cosine > 0.9999 for o in result.parity.report.outputs)
    assert read_meta(result.path).source_model == "nanodet-m"


def test_conversion_that_changes_numbers_is_refused_and_not_saved(tiny_onnx, tmp_path, monkeypatch, samples_cache):
    import edgevision.conversion.openvino as ov_convert

    real_read = ov_convert.read_onnx

    def perturbed(source):
        model = onnx.load(str(source))
        weight = next(t for t in model.graph.initializer if numpy_helper.to_array(t).ndim == 4)
        weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) + 0.5, weight.name))
        onnx.save(model, str(tmp_path / "perturbed.onnx"))
        return real_read(tmp_path / "perturbed.onnx")

    monkeypatch.setattr(ov_convert, "read_onnx", perturbed)
    out = tmp_path / "out" / "tiny.xml"
    with pytest.raises(EdgevisionError, match="changes the model's numbers.*not saved"):
        convert_model(str(tiny_onnx), to="openvino", output=out)
    assert not out.exists() and not out.with_suffix(".bin").exists()
    assert read_meta(out) is None


def test_unsupported_op_for_openvino_names_op_and_other_runtimes(tmp_path):
    model = _single_op_model(tmp_path / "det.onnx", "Det", [2, 3, 3])
    with pytest.raises(EdgevisionError) as info:
        convert_model(str(model), to="openvino", output=tmp_path / "det.xml")
    text = str(info.value)
    assert "OpenVINO cannot convert op(s) Det" in text and "onnxruntime" in text
    assert not (tmp_path / "det.xml").exists()


def test_unsupported_op_for_tflite_names_op(tmp_path):
    like = numpy_helper.from_array(np.zeros(1, np.float32), "like")
    model = _single_op_model(tmp_path / "castlike.onnx", "CastLike", [1, 3, 8, 8], ["like"], [like])
    with pytest.raises(EdgevisionError, match=r"cannot convert op\(s\) CastLike.*onnxruntime, openvino"):
        convert_model(str(model), to="tflite", output=tmp_path / "castlike.tflite")


def test_optimize_fuses_and_keeps_parity(tmp_path, samples_cache):
    source = conv_bn_model(tmp_path / "convbn.onnx")
    result = optimize_model(str(source), output=tmp_path / "opt.onnx")
    before, after = result.report.before, result.report.after
    assert sum(after.values()) < sum(before.values())
    assert after["BatchNormalization"] == 0 and after["Identity"] == 0
    assert result.report.parity.passed
    assert op_counts(onnx.load(str(result.path))) == after
    assert "total" in result.report.table()


def test_optimize_zoo_model_never_grows(tmp_path, samples_cache):
    result = optimize_model("movenet-lightning", output=tmp_path / "movenet.onnx")
    assert sum(result.report.after.values()) <= sum(result.report.before.values())
    assert result.report.parity.agreement["value"] >= 0.99


def test_cli_convert_and_unsupported_op(tiny_onnx, tmp_path, samples_cache):
    done = run_cli("convert", tiny_onnx, "--to", "openvino", "-o", tmp_path / "cli.xml")
    assert done.returncode == 0, done.stderr
    assert "parity passed" in done.stdout
    assert json.loads((tmp_path / "cli.xml.edgevision.json").read_text())["runtime"] == "openvino"
    det = _single_op_model(tmp_path / "det.onnx", "Det", [2, 3, 3])
    done = run_cli("convert", det, "--to", "openvino", "-o", tmp_path / "det.xml")
    assert done.returncode == 2 and "Det" in done.stderr and "Traceback" not in done.stderr
