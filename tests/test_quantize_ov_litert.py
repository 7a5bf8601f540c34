"""OpenVINO (NNCF) and LiteRT (onnx2tf) quantizers: files produced, smaller, still agreeing."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgevision.backends import create_backend
from edgevision.errors import EdgevisionError
from edgevision.quantization import QuantizeOptions, get_quantizer, list_quantizers
from edgevision.zoo import model_file


def small_convnet(path):
    """A seeded conv net with a padded max-pool, 3x32x32 in, logits and a feature map out."""
    rng = np.random.default_rng(0)

    def weight(name, *shape):
        return numpy_helper.from_array(rng.normal(0, 0.2, shape).astype(np.float32), name)

    inits = [
        weight("w1", 32, 3, 3, 3),
        weight("b1", 32),
        weight("w2", 64, 32, 3, 3),
        weight("b2", 64),
        weight("fc", 64, 10),
        weight("fcb", 10),
    ]
    nodes = [
        helper.make_node("Conv", ["images", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node(
            "MaxPool", ["r1"], ["p1"], name="pool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]
        ),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["features"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["features"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc", "fcb"], ["logits"], name="fc"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10]),
            helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 64, 16, 16]),
        ],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture(scope="module")
def convnet(tmp_path_factory):
    return small_convnet(tmp_path_factory.mktemp("convnet") / "convnet.onnx")


@pytest.fixture(scope="module")
def convnet_calibration():
    rng = np.random.default_rng(1)
    return [{"images": rng.random((1, 3, 32, 32), dtype=np.float32)} for _ in range(16)]


def _cosines(source, produced, feeds) -> dict[str, float]:
    want = create_backend(None, source).run(feeds)
    got = create_backend(None, produced).run(feeds)
    return {
        n: float(np.dot(want[n].ravel(), got[n].ravel()) / np.linalg.norm(want[n]) / np.linalg.norm(got[n]))
        for n in want
    }


def _bytes(path) -> int:
    return path.stat().st_size + (path.with_suffix(".bin").stat().st_size if path.suffix == ".xml" else 0)


def _weight_bytes(path) -> int:
    """Size of the weights: an IR's ``.bin`` (its ``.xml`` text is a fixed overhead), else the file."""
    return (path.with_suffix(".bin") if path.suffix == ".xml" else path).stat().st_size


def test_both_quantizers_are_registered():
    assert {"openvino", "litert"} <= set(list_quantizers())
    assert get_quantizer("openvino").suffix == ".xml" and get_quantizer("litert").suffix == ".tflite"


@pytest.mark.parametrize("backend", ["openvino", "litert"])
def test_fp16_and_int8_are_smaller_and_agree(backend, convnet, convnet_calibration, tmp_path):
    quantizer = get_quantizer(backend)
    fp32 = quantizer.quantize(convnet, tmp_path / f"fp32{quantizer.suffix}", options=QuantizeOptions(precision="fp32"))
    sizes = {"fp32": _weight_bytes(fp32)}
    for precision in ("fp16", "int8"):
        out = quantizer.quantize(
            convnet,
            tmp_path / f"{precision}{quantizer.suffix}",
            options=QuantizeOptions(precision=precision),
            calibration=convnet_calibration,
        )
        sizes[precision] = _weight_bytes(out)
        cosines = _cosines(convnet, out, convnet_calibration[0])
        # int8: 0.97+ where the CPU has VNNI; x86 CPUs with AVX2 only saturate int8 pair sums (0.962 seen there)
        assert min(cosines.values()) > (0.999 if precision == "fp16" else 0.95), (precision, cosines)
    assert sizes["int8"] < sizes["fp16"] < sizes["fp32"], sizes
    assert sizes["int8"] < 0.5 * sizes["fp32"], sizes


def test_litert_int8_keeps_input_layout_and_names(convnet, convnet_calibration, tmp_path):
    out = get_quantizer("litert").quantize(
        convnet, tmp_path / "int8.tflite", options=QuantizeOptions(precision="int8"), calibration=convnet_calibration
    )
    backend = create_backend(None, out)
    assert [(s.name, s.shape, s.dtype) for s in backend.inputs] == [("images", (1, 3, 32, 32), "float32")]
    assert sorted(s.name for s in backend.outputs) == ["features", "logits"]


def test_openvino_int8_excludes_onnx_layers_by_their_openvino_names(convnet, convnet_calibration, tmp_path):
    quantizer = get_quantizer("openvino")
    assert quantizer.layers(convnet) == ["conv1", "conv2", "fc"]
    out = quantizer.quantize(
        convnet, tmp_path / "excl.xml", options=QuantizeOptions(exclude=("conv1",)), calibration=convnet_calibration
    )
    assert out.exists()
    with pytest.raises(EdgevisionError, match="not in the model"):
        quantizer.quantize(
            convnet, tmp_path / "bad.xml", options=QuantizeOptions(exclude=("nope",)), calibration=convnet_calibration
        )


@pytest.mark.parametrize(
    ("backend", "options", "message"),
    [
        ("openvino", QuantizeOptions(precision="int8-dynamic"), "dynamically"),
        ("openvino", QuantizeOptions(method="entropy"), "no 'entropy' calibration"),
        ("openvino", QuantizeOptions(), "needs calibration"),
        ("litert", QuantizeOptions(method="percentile"), "min/max only"),
        ("litert", QuantizeOptions(precision="fp16", exclude=("conv1",)), "only at --precision int8"),
        ("litert", QuantizeOptions(), "needs calibration"),
    ],
)
def test_refusals_are_clear(backend, options, message, convnet, tmp_path):
    with pytest.raises(EdgevisionError, match=message):
        get_quantizer(backend).quantize(convnet, tmp_path / "x", options=options)


def test_nanodet_openvino_int8_is_small_and_decodes(tmp_path, samples_cache):
    from edgevision.conversion.parity import photos
    from edgevision.quantization.calibration import load_calibration
    from edgevision.zoo.assemble import SingleStagePredictor, processor_for

    source = model_file("nanodet-m", "onnx")
    processor = processor_for("nanodet-m")
    calibration = load_calibration(
        str(samples_cache["vtest.avi"]), processor, input_name="input_1:0", count=8, holdout=0
    )
    out = get_quantizer("openvino").quantize(
        source,
        tmp_path / "nanodet-int8.xml",
        options=QuantizeOptions(method="mean-minmax"),
        calibration=calibration.feeds,
    )
    assert _bytes(out) < 0.3 * source.stat().st_size
    image = photos(["person.jpg"])[0]
    reference = SingleStagePredictor(create_backend(None, source), processor)(image)
    prediction = SingleStagePredictor(create_backend(None, out), processor)(image)  # the int8 IR, decoded
    confident = reference.scores >= 0.5
    assert prediction.task == "detection" and confident.sum() >= 1
    for box, class_id in zip(reference.xyxy[confident], reference.class_ids[confident]):
        same_class = prediction.xyxy[prediction.class_ids == class_id]
        assert len(same_class) and _iou(box, same_class).max() >= 0.5, (box, class_id, prediction)


def _iou(box, boxes) -> np.ndarray:
    lt, rb = np.maximum(box[:2], boxes[:, :2]), np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / (area(box) + area(boxes) - inter)


def _budget_on_convnet(convnet, calibration_feeds, tmp_path, extra: dict):
    from edgevision.quantization.budget import AgreementJudge, run_budget
    from edgevision.quantization.calibration import CalibrationSet

    held = calibration_feeds[-4:]
    calibration = CalibrationSet(calibration_feeds[:-4], held, [], [])
    return run_budget(
        convnet,
        quantizer=get_quantizer("openvino"),
        options=QuantizeOptions(precision="int8", extra=extra),
        calibration=calibration,
        judge=AgreementJudge(convnet, calibration, None),
        max_drop=0.02,
        workdir=tmp_path,
    )


def test_the_budget_tries_the_faster_preset_first_and_records_what_it_kept(convnet, convnet_calibration, tmp_path):
    outcome = _budget_on_convnet(convnet, convnet_calibration, tmp_path, {})
    first = outcome.attempts[0]
    assert first.settings == {"preset": "performance"}
    assert any("preset performance" in note for note in first.notes)
    if outcome.met and outcome.best is first:  # the chosen attempt's own notes travel with it
        assert len(outcome.attempts) == 1
    else:
        assert outcome.attempts[1].settings == {} and any("preset mixed" in n for n in outcome.attempts[1].notes)


def test_a_preset_the_user_chose_is_not_overridden(convnet, convnet_calibration, tmp_path):
    outcome = _budget_on_convnet(convnet, convnet_calibration, tmp_path, {"preset": "mixed"})
    assert all(a.settings == {} for a in outcome.attempts)
    assert any("preset mixed" in note for note in outcome.attempts[0].notes)
