"""ONNX Runtime quantization, calibration sets and the quantize command."""

from __future__ import annotations

import json

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import tiny_models
from conftest import run_cli
from edgevision.errors import EdgevisionError
from edgevision.models.raw import raw_processor
from edgevision.quantization import QuantizeOptions, get_quantizer
from edgevision.quantization.api import quantize_model
from edgevision.quantization.calibration import load_calibration
from edgevision.quantization.ort import nonfinite_constants, prepare_model
from edgevision.types import TensorSpec
from edgevision.variants import read_meta


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    return tiny_models.build_torch(tmp_path_factory.mktemp("tiny-q"))["onnx"]


@pytest.fixture(scope="module")
def tiny_feeds():
    rng = np.random.default_rng(0)
    return [{"images": rng.uniform(-1, 1, tiny_models.INPUT_SHAPE).astype(np.float32)} for _ in range(8)]


def _conv(model_path) -> onnx.NodeProto:
    return next(n for n in onnx.load(str(model_path)).graph.node if n.op_type == "Conv")


def _dequantized(model_path) -> set[str]:
    return {n.output[0] for n in onnx.load(str(model_path)).graph.node if n.op_type == "DequantizeLinear"}


# ----------------------------------------------------------------------------- tiny model


def test_static_int8_quantizes_the_conv_and_honours_exclude(tiny_onnx, tiny_feeds, tmp_path):
    quantizer = get_quantizer("ort")
    conv = _conv(tiny_onnx).name
    plain = quantizer.quantize(tiny_onnx, tmp_path / "int8.onnx", options=QuantizeOptions(), calibration=tiny_feeds)
    kept = quantizer.quantize(
        tiny_onnx, tmp_path / "kept.onnx", options=QuantizeOptions(exclude=(conv,)), calibration=tiny_feeds
    )
    assert _conv(plain).input[1] in _dequantized(plain)  # weight comes out of a DequantizeLinear
    assert _conv(kept).input[1] not in _dequantized(kept)  # weight stays a float initializer
    assert not list(tmp_path.glob(".*"))  # no temporary files left beside the outputs


@pytest.mark.parametrize("precision", ["fp16", "int8-dynamic"])
def test_other_precisions_run_and_keep_float_io(tiny_onnx, tiny_feeds, tmp_path, precision):
    import onnxruntime as ort

    out = get_quantizer("ort").quantize(tiny_onnx, tmp_path / "m.onnx", options=QuantizeOptions(precision=precision))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    logits = session.run(None, tiny_feeds[0])[0]
    expected = tiny_models.reference(tiny_feeds[0]["images"])["logits"]
    assert logits.dtype == np.float32 and np.allclose(logits, expected, atol=0.05)


@pytest.mark.parametrize(
    "options, calibration, message",
    [
        (QuantizeOptions(method="kl-magic"), True, "unknown calibration method"),
        (QuantizeOptions(precision="int4"), True, "makes fp16"),
        (QuantizeOptions(), False, "needs calibration images"),
        (QuantizeOptions(exclude=("no_such_layer",)), True, "no layer named"),
    ],
)
def test_bad_options_are_refused(tiny_onnx, tiny_feeds, tmp_path, options, calibration, message):
    with pytest.raises(EdgevisionError, match=message):
        get_quantizer("ort").quantize(
            tiny_onnx, tmp_path / "x.onnx", options=options, calibration=tiny_feeds if calibration else ()
        )
    assert not (tmp_path / "x.onnx").exists()


def test_entropy_calibration_differs_from_minmax(tiny_onnx, tiny_feeds, tmp_path):
    quantizer = get_quantizer("ort")
    scales = {}
    for method in ("minmax", "entropy"):
        out = quantizer.quantize(
            tiny_onnx, tmp_path / f"{method}.onnx", options=QuantizeOptions(method=method), calibration=tiny_feeds
        )
        inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(out)).graph.initializer}
        scales[method] = {k: v for k, v in inits.items() if k.endswith("_scale") and v.size == 1}
    assert any(not np.isclose(scales["minmax"][k], scales["entropy"][k]) for k in scales["minmax"])


def _pool_model(pad_value: float, folder) -> str:
    pads = numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int64), "pads")
    value = numpy_helper.from_array(np.array(pad_value, np.float32), "value")
    nodes = [
        helper.make_node("Pad", ["x", "pads", "value"], ["p"], name="pad"),
        helper.make_node("MaxPool", ["p"], ["y"], name="pool", kernel_shape=[2, 2]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [pads, value],
    )
    path = folder / f"pool{pad_value}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_minus_inf_maxpool_padding_is_folded_before_calibration(tmp_path):
    prepared = prepare_model(_pool_model(-np.inf, tmp_path), tmp_path)
    model = onnx.load(str(prepared))
    assert not nonfinite_constants(model)
    assert [n.op_type for n in model.graph.node] == ["MaxPool"]


def test_other_nonfinite_constants_are_refused(tmp_path):
    path = _pool_model(np.inf, tmp_path)
    with pytest.raises(EdgevisionError, match="non-finite constants"):
        prepare_model(path, tmp_path)


# ----------------------------------------------------------------------------- calibration sets


def _images(folder, count):
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        cv2.imwrite(str(folder / f"{i:02d}.png"), rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    return folder


PROCESSOR = raw_processor(TensorSpec("images", tiny_models.INPUT_SHAPE, "float32"))


def test_calibration_from_a_folder_splits_holdout(tmp_path):
    calib = load_calibration(str(_images(tmp_path / "imgs", 12)), PROCESSOR, input_name="images", count=10, holdout=2)
    assert len(calib.feeds) == 10 and len(calib.holdout_feeds) == 2 and len(calib.holdout_images) == 2
    assert calib.feeds[0]["images"].shape == tiny_models.INPUT_SHAPE


def test_calibration_from_a_video_spreads_frames(short_video):
    calib = load_calibration(str(short_video), PROCESSOR, input_name="images", count=8, holdout=2, min_images=4)
    assert len(calib.feeds) + len(calib.holdout_feeds) == 10
    assert calib.description["last"].endswith("#11") or calib.description["last"].endswith("#10")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d, "holds no images"),  # empty folder
        (lambda d: _images(d, 3), "calibration needs at least 8"),
        (lambda d: (d / "clip.avi").write_bytes(b"not a video") and d / "clip.avi", "cannot open video|cannot read"),
        (lambda d: (d / "x.jpg").write_bytes(b"not a jpeg") and d, "not an image"),
        (lambda d: d / "missing", "does not exist"),
    ],
)
def test_bad_calibration_sources(tmp_path, make, message):
    folder = tmp_path / "src"
    folder.mkdir()
    with pytest.raises(EdgevisionError, match=message):
        load_calibration(str(make(folder)), PROCESSOR, input_name="images")


def test_cli_reports_an_empty_calibration_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = run_cli("quantize", str(tmp_path / "none.onnx"), "--calib", str(tmp_path / "empty"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr


# ----------------------------------------------------------------------------- a real model


@pytest.mark.slow
def test_nanodet_int8_is_smaller_and_described(samples_cache, tmp_path):
    from edgevision.quantization.budget import model_bytes
    from edgevision.zoo import model_file

    out = tmp_path / "nanodet-int8" / "model.onnx"
    first_conv = _conv(model_file("nanodet-m", "onnx")).name  # converter-assigned name
    options = QuantizeOptions(
        exclude=(first_conv,), max_drop=None, calib=str(samples_cache["vtest.avi"]), calib_count=20
    )
    result = quantize_model("nanodet-m", backend="ort", output=out, options=options)
    assert out.exists() and result.size_ratio < 0.3
    meta = read_meta(out)
    assert meta.precision == "int8" and meta.runtime == "onnxruntime" and meta.source_model == "nanodet-m"
    assert meta.excluded == [first_conv] and meta.calibration["method"] == "minmax"
    assert set(meta.agreement["latency_ms_p50"]) == {"fp32", "int8"}
    # No budget asked: one attempt, measured and recorded as such. All-layer int8 kept 0.69 mAP by
    # hand (a NaN scale gives no detections, 0); identical to float would mean nothing was quantized.
    assert meta.agreement["max_drop"] is None and meta.agreement["met"] is None
    assert meta.agreement["attempts"] == [
        {"excluded": 1, "agreement": round(result.agreement, 4), "bytes": model_bytes(out)}
    ]
    assert meta.agreement["value"] == pytest.approx(result.agreement) and 0.5 <= result.agreement < 1.0
    assert json.loads(out.with_name("model.onnx.edgevision.json").read_text())["source_sha256"]
    assert _conv(out).name == first_conv and _conv(out).input[1] not in _dequantized(out)


def test_holdout_source_adds_to_the_held_out_images(tmp_path):
    extra = _images(tmp_path / "photos", 3)
    calib = load_calibration(
        str(_images(tmp_path / "imgs", 12)),
        PROCESSOR,
        input_name="images",
        count=10,
        holdout=2,
        holdout_source=[str(extra)],
    )
    assert len(calib.feeds) == 10 and len(calib.holdout_feeds) == 2 + 2  # two own, two of the three photos (holdout=2)
