"""The quantize matrix's verdicts: which int8 variant of each model is usable."""

from __future__ import annotations

from conftest import load_benchmark as load


def row(backend: str, agreement: float, fp32_ms: float, variant_ms: float, precision: str = "int8") -> dict:
    return {
        "model": "m",
        "backend": backend,
        "precision": precision,
        "agreement": agreement,
        "p50_fp32_ms": fp32_ms,
        "p50_variant_ms": variant_ms,
    }


def test_a_variant_is_usable_only_within_the_budget_and_fast_enough():
    matrix = load("quantize_matrix")
    assert matrix.usable(row("ort", 0.981, 30.0, 20.0), 0.02)
    assert not matrix.usable(row("ort", 0.979, 30.0, 10.0), 0.02)  # misses the budget
    assert not matrix.usable(row("ort", 1.0, 30.0, 21.0), 0.02)  # 1.43x its fp32
    assert not matrix.usable({**row("ort", 1.0, 30.0, 10.0), "p50_fp32_ms": None}, 0.02)  # fp32 not timed


def test_the_verdict_names_the_fastest_usable_int8_or_every_miss():
    matrix = load("quantize_matrix")
    rows = [
        row("ort", 0.99, 30.0, 18.0),
        row("openvino", 0.985, 30.0, 10.0),
        row("litert", 0.97, 30.0, 5.0),
        row("openvino", 1.0, 30.0, 5.0, precision="fp16"),  # not int8: no say in the verdict
    ]
    assert matrix.verdicts(rows, 0.02) == ["m: usable int8 on openvino: agreement 0.985, 3.00x its runtime's fp32"]
    missed = matrix.verdicts([row("ort", 0.9, 30.0, 18.0), {**row("litert", 0, 0, 0), "error": "x"}], 0.02)
    assert missed == ["m: NO usable int8 (ort 0.900 at 1.67x)"]


def test_each_model_is_timed_against_its_own_fp32_conversion(tmp_path, tiny_model_files):
    # PyTorch zoo models are exported to model.onnx in different folders: one shared fp32 file
    # timed YOLOX's variant against OpenPose's IR.
    matrix = load("quantize_matrix")
    source = tiny_model_files["onnxruntime"]
    first = matrix.fp32_file("yolox-nano", source, "openvino", tmp_path)
    second = matrix.fp32_file("openpose-body", source, "openvino", tmp_path)
    assert first != second and first.exists() and second.exists()
    assert matrix.fp32_file("yolox-nano", source, "ort", tmp_path) == source


def test_rows_are_saved_after_every_job(tmp_path):
    import argparse
    import json

    matrix = load("quantize_matrix")
    args = argparse.Namespace(json=tmp_path / "m.json", markdown=tmp_path / "m.md", max_drop=0.02)
    done = {**row("ort", 0.99, 30.0, 18.0), "size_mb": 1.0, "size_ratio": 0.25, "worst_cosine": 0.99}
    matrix.save([{**done, "metric": "mAP", "budget_met": True, "fp32_runtime": "onnxruntime"}], args)
    assert json.loads(args.json.read_text())[0]["backend"] == "ort"
    assert "m: usable int8 on ort" in args.markdown.read_text()


def test_dynamic_image_sides_are_timed_at_the_given_size(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    io = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n", 3, "h", "w"])  # noqa: E731
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [io("x")], [io("y")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "dynamic.onnx"))
    feeds = load("quantize_matrix").input_feed(tmp_path / "dynamic.onnx", "onnxruntime", side=448)
    assert feeds["x"].shape == (1, 3, 448, 448)
