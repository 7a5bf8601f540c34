"""OpenVINO's inference precision: true f32 for fp32 files, the plugin default for int8/fp16, bf16 where offered."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import tiny_models
from conftest import QUICK_TIMING
from edgevision.backends import create_backend
from edgevision.errors import EdgevisionError

ov = pytest.importorskip("openvino")

# The tests hold on any CPU: with bf16 units the plugin's default for reduced-precision files
# is bf16 and must be kept; without them it is f32, and asking for bf16 is refused.
PLUGIN_DEFAULT = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
HAS_BF16 = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def _conv_model(*, quantized: bool) -> ov.Model:
    """A 3x3 convolution, with FakeQuantize on its input and weights when ``quantized``."""
    from openvino import opset13 as ops

    x = ops.parameter([1, 3, 16, 16], np.float32, name="images")
    w = ops.constant(np.random.default_rng(0).normal(size=(8, 3, 3, 3)).astype(np.float32))
    src, weights = x, w
    if quantized:
        lo, hi = ops.constant(np.float32(-4)), ops.constant(np.float32(4))
        src = ops.fake_quantize(x, lo, hi, lo, hi, 256)
        weights = ops.fake_quantize(w, lo, hi, lo, hi, 255)
    conv = ops.convolution(src, weights, [1, 1], [1, 1], [1, 1], [1, 1])
    return ov.Model([ops.relu(conv)], [x], "tiny-conv")


@pytest.fixture(scope="module")
def ir_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("ov-precision")
    files = {"fp32": folder / "fp32.xml", "fp16": folder / "fp16.xml", "int8": folder / "int8.xml"}
    ov.save_model(_conv_model(quantized=False), str(files["fp32"]), compress_to_fp16=False)
    ov.save_model(_conv_model(quantized=False), str(files["fp16"]), compress_to_fp16=True)
    ov.save_model(_conv_model(quantized=True), str(files["int8"]), compress_to_fp16=False)
    return files


def compiled_hint(backend) -> str:
    return backend.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()


# ----------------------------------------------------------------------------- the backend


def test_fp32_file_compiles_in_true_f32(ir_files):
    backend = create_backend(None, ir_files["fp32"], threads=1)
    assert compiled_hint(backend) == "f32" and backend.inference_precision == "f32"


@pytest.mark.parametrize("made_as", ["int8", "fp16"])
def test_reduced_precision_files_keep_the_plugin_default(ir_files, made_as):
    from edgevision.backends.openvino import AUTO, precision_hint

    assert precision_hint(ov.Core().read_model(str(ir_files[made_as])), AUTO) is None  # nothing forced
    assert precision_hint(ov.Core().read_model(str(ir_files["fp32"])), AUTO) == "f32"
    backend = create_backend(None, ir_files[made_as], threads=1)
    assert compiled_hint(backend) == PLUGIN_DEFAULT == ("bf16" if HAS_BF16 else "f32")
    assert backend.inference_precision == PLUGIN_DEFAULT


@pytest.mark.parametrize(("made_as", "precision", "expected"), [("int8", "f32", "f32"), ("fp32", "default", None)])
def test_precision_option_overrides_the_file_rule(ir_files, made_as, precision, expected):
    backend = create_backend("openvino", ir_files[made_as], threads=1, precision=precision)
    assert compiled_hint(backend) == (expected or PLUGIN_DEFAULT)


def test_bf16_option_compiles_in_bf16_where_the_cpu_has_it(ir_files):
    if not HAS_BF16:
        with pytest.raises(EdgevisionError, match="no bf16 units"):
            create_backend("openvino", ir_files["fp32"], threads=1, precision="bf16")
        return
    assert compiled_hint(create_backend("openvino", ir_files["fp32"], threads=1, precision="bf16")) == "bf16"


@pytest.mark.parametrize(
    ("runtime", "precision", "words"),
    [("onnxruntime", "bf16", "cannot be told a precision"), ("openvino", "fp64", "takes auto, default")],
)
def test_a_precision_the_runtime_does_not_take_is_one_sentence(tiny_model_files, runtime, precision, words):
    with pytest.raises(EdgevisionError, match=words):
        create_backend(runtime, tiny_model_files[runtime], precision=precision)


def test_bf16_is_refused_on_a_cpu_without_bf16_units(ir_files, monkeypatch):
    import edgevision.backends.openvino as backend_module

    monkeypatch.setattr(backend_module, "cpu_capabilities", lambda: ("FP32", "INT8"))
    with pytest.raises(EdgevisionError, match="no bf16 units"):
        create_backend("openvino", ir_files["fp32"], precision="bf16")


# ----------------------------------------------------------------------------- the variants


@pytest.fixture()
def source(tmp_path):
    from edgevision.benchmark.variants import BenchSource

    onnx = tiny_models.build_torch(tmp_path)["onnx"]
    return BenchSource("tiny", onnx, "0" * 64, None)


@pytest.mark.parametrize(("capabilities", "offered"), [(("BF16", "FP32", "INT8"), True), (("FP32", "INT8"), False)])
def test_bf16_variant_is_offered_only_where_the_cpu_reports_bf16(source, monkeypatch, capabilities, offered):
    import edgevision.backends.openvino as backend_module
    from edgevision.benchmark.variants import choose_variants

    monkeypatch.setattr(backend_module, "cpu_capabilities", lambda: capabilities)
    chosen = choose_variants(None, source)
    assert "openvino-int8" in chosen and ("openvino-bf16" in chosen) is offered


def test_naming_bf16_on_a_cpu_without_it_is_one_sentence(source, monkeypatch):
    import edgevision.backends.openvino as backend_module
    from edgevision.benchmark.variants import choose_variants

    monkeypatch.setattr(backend_module, "cpu_capabilities", lambda: ("FP32",))
    with pytest.raises(EdgevisionError, match="openvino-bf16: this CPU has no bf16 units"):
        choose_variants("openvino-bf16", source)


@pytest.mark.parametrize(
    ("key", "inference"),
    [("openvino-fp32", "f32"), ("openvino-bf16", "bf16"), ("openvino-int8", "default"), ("openvino-fp16", "default")],
)
def test_variant_kinds_carry_their_inference_precision(key, inference):
    from edgevision.benchmark.variants import KINDS

    assert KINDS[key].inference == inference


def test_worker_reports_the_precision_it_runs_int8_with(ir_files, tmp_path):
    from edgevision.benchmark.worker import VariantRunner

    image = tmp_path / "image.npy"
    np.save(image, np.zeros((16, 16, 3), np.uint8))
    reply = VariantRunner().load(
        path=str(ir_files["int8"]),
        runtime="openvino",
        threads=1,
        source_model=None,
        image=str(image),
        precision="default",
    )
    assert reply["inference_precision"] == PLUGIN_DEFAULT == ("bf16" if HAS_BF16 else "f32")


def test_results_json_and_table_carry_the_precision(tmp_path):
    import edgevision

    onnx = tiny_models.build_torch(tmp_path)["onnx"]
    result = edgevision.bench(
        str(onnx),
        variants="openvino-fp32,openvino-bf16" if HAS_BF16 else "openvino-fp32",
        threads="1",
        output=tmp_path / "out",
        timing=QUICK_TIMING,
        measure_peak=False,
        data_count=2,
    )
    records = {r["variant"]: r for r in json.loads(result.paths["json"].read_text())["variants"]}
    assert records["openvino-fp32"]["inference_precision"] == "f32"
    if not HAS_BF16:
        assert "openvino-bf16" not in records and "openvino-fp32 (f32)" in result.paths["md"].read_text()
        return
    assert records["openvino-bf16"]["inference_precision"] == "bf16"
    assert records["openvino-bf16"]["precision"] == "bf16" and records["openvino-bf16"]["agreement"] is not None
    assert records["openvino-bf16"]["file"] == records["openvino-fp32"]["file"]
    assert "openvino-bf16 (bf16)" in result.paths["md"].read_text()
