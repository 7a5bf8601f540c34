"""YOLOX: official state-dict layout, strict checkpoint loading, decoding, ONNX export."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from edgevision.errors import EdgevisionError
from edgevision.models.transforms import letterbox
from edgevision.models.yolox import YoloxProcessor, build_yolox, load_yolox_checkpoint
from edgevision.zoo import get_spec, list_models

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def nano():
    torch.manual_seed(0)
    return build_yolox("yolox-nano")


def test_family_modules_import_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import edgevision.models.yolox, edgevision.models.openpose, edgevision.models.flops\n"
        "import edgevision.conversion.torch_onnx\n"
        "from edgevision.zoo import list_models; assert 'yolox-nano' in list_models()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_zoo_entries():
    assert {"yolox-nano", "yolox-tiny", "yolox-s", "yolox-m", "yolox-l", "yolox-x"} <= set(list_models("yolox*"))
    spec = get_spec("yolox-nano")
    assert spec.input_size == (416, 416) and spec.flops_input == (1, 3, 416, 416)
    assert spec.weights.url.endswith("/0.1.1rc0/yolox_nano.pth") and len(spec.weights.sha256) == 64
    assert get_spec("yolox-s").input_size == (640, 640)
    assert spec.processor().input_size == (416, 416)


@pytest.mark.parametrize(
    ("variant", "key", "shape"),
    [
        ("yolox-nano", "backbone.backbone.stem.conv.conv.weight", (16, 12, 3, 3)),
        ("yolox-nano", "backbone.backbone.dark2.0.dconv.conv.weight", (16, 1, 3, 3)),
        ("yolox-nano", "backbone.backbone.dark2.0.pconv.bn.running_var", (32,)),
        ("yolox-nano", "backbone.backbone.dark5.1.m.2.stride", None),  # max-pools hold no tensors
        ("yolox-nano", "backbone.C3_p3.m.0.conv2.dconv.conv.weight", (32, 1, 3, 3)),
        ("yolox-nano", "head.stems.2.conv.weight", (64, 256, 1, 1)),
        ("yolox-nano", "head.cls_preds.0.weight", (80, 64, 1, 1)),
        ("yolox-nano", "head.obj_preds.1.bias", (1,)),
        ("yolox-s", "backbone.backbone.stem.conv.conv.weight", (32, 12, 3, 3)),
        ("yolox-s", "backbone.backbone.dark3.1.m.2.conv2.conv.weight", (64, 64, 3, 3)),
        ("yolox-s", "backbone.backbone.dark5.1.conv2.conv.weight", (512, 1024, 1, 1)),
        ("yolox-s", "backbone.C3_n4.conv3.conv.weight", (512, 512, 1, 1)),
        ("yolox-s", "head.reg_convs.2.1.conv.weight", (128, 128, 3, 3)),
        ("yolox-s", "head.reg_preds.0.weight", (4, 128, 1, 1)),
    ],
)
def test_official_keys_and_shapes(variant, key, shape):
    state = build_yolox(variant).state_dict()
    if shape is None:
        assert key not in state
    else:
        assert tuple(state[key].shape) == shape


@pytest.mark.parametrize(
    ("variant", "keys", "millions"),
    [("yolox-nano", 642, 0.91), ("yolox-tiny", 462, 5.06), ("yolox-s", 462, 8.97), ("yolox-m", 606, 25.33)],
)
def test_key_count_and_params(variant, keys, millions):
    from edgevision.models.flops import count_params

    model = build_yolox(variant)
    assert len(model.state_dict()) == keys
    assert count_params(model) / 1e6 == pytest.approx(millions, abs=0.01)


def test_flops_follow_yolox_convention(nano):
    from edgevision.models.flops import count_macs

    # A fully convolutional net's MACs scale with the input area: count at 128, scale to 416.
    macs_416 = count_macs(nano, (1, 3, 128, 128)) * (416 / 128) ** 2
    assert 2 * macs_416 / 1e9 == pytest.approx(1.08, abs=0.05)  # YOLOX's "GFLOPs" = 2 x MACs


def test_unknown_variant():
    with pytest.raises(EdgevisionError, match="yolox-nano"):
        build_yolox("yolox-huge")


# ----------------------------------------------------------------------------- checkpoints


def _random_state(model) -> dict:
    gen = torch.Generator().manual_seed(1)
    return {k: torch.randn(v.shape, generator=gen).to(v.dtype) for k, v in model.state_dict().items()}


def test_official_layout_checkpoint_loads(tmp_path, nano):
    state = _random_state(nano)
    torch.save({"start_epoch": 300, "model": state, "optimizer": {}}, tmp_path / "yolox_nano.pth")
    model = build_yolox("yolox-nano")
    load_yolox_checkpoint(model, tmp_path / "yolox_nano.pth")
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_missing_key_is_named(tmp_path, nano):
    state = _random_state(nano)
    del state["head.obj_preds.2.bias"]
    torch.save({"model": state}, tmp_path / "bad.pth")
    with pytest.raises(EdgevisionError, match=r"missing key 'head\.obj_preds\.2\.bias'"):
        load_yolox_checkpoint(build_yolox("yolox-nano"), tmp_path / "bad.pth")


def test_unexpected_key_is_named(tmp_path, nano):
    state = _random_state(nano) | {"head.extra.weight": torch.zeros(1)}
    torch.save({"model": state}, tmp_path / "bad.pth")
    with pytest.raises(EdgevisionError, match=r"unexpected key 'head\.extra\.weight'"):
        load_yolox_checkpoint(build_yolox("yolox-nano"), tmp_path / "bad.pth")


def test_misshaped_key_is_named(tmp_path, nano):
    state = _random_state(nano)
    state["head.cls_preds.1.weight"] = torch.zeros(20, 64, 1, 1)
    torch.save({"model": state}, tmp_path / "bad.pth")
    with pytest.raises(EdgevisionError, match=r"'head\.cls_preds\.1\.weight' has shape \(20, 64, 1, 1\)"):
        load_yolox_checkpoint(build_yolox("yolox-nano"), tmp_path / "bad.pth")


def test_other_variant_is_refused_with_counts(tmp_path, nano):
    torch.save({"model": _random_state(nano)}, tmp_path / "yolox_nano.pth")
    with pytest.raises(EdgevisionError, match=r"\(and \d+ more\).*another YOLOX variant"):
        load_yolox_checkpoint(build_yolox("yolox-s"), tmp_path / "yolox_nano.pth")


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"not a checkpoint at all", "not a PyTorch checkpoint"), (None, "expected a dict with a 'model'")],
)
def test_non_checkpoint_files_are_refused(tmp_path, content, message):
    path = tmp_path / "file.pth"
    if content is None:
        torch.save({"epoch": 3}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(EdgevisionError, match=message):
        load_yolox_checkpoint(build_yolox("yolox-nano"), path)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(EdgevisionError, match="does not exist"):
        load_yolox_checkpoint(build_yolox("yolox-nano"), tmp_path / "nope.pth")


# ----------------------------------------------------------------------------- graph decode


def test_in_graph_box_decode_matches_yolox_formula():
    from edgevision.models.nets.yolox import decode_boxes, grid_xy

    grid = grid_xy(2, 3, torch.float32)  # cells row-major: (col, row)
    assert grid[0].tolist() == [[0, 0], [1, 0], [2, 0], [0, 1], [1, 1], [2, 1]]
    reg = torch.zeros(1, 6, 4)
    reg[0, 5] = torch.tensor([0.5, 0.25, float(np.log(2.0)), 0.0])
    boxes = decode_boxes(reg, grid, 8)
    # centre ((2 + 0.5) * 8, (1 + 0.25) * 8) = (20, 10); size (2 * 8, 8)
    assert boxes[0, 5].tolist() == pytest.approx([12.0, 6.0, 28.0, 14.0])
    assert boxes[0, 0].tolist() == pytest.approx([-4.0, -4.0, 4.0, 4.0])


def test_network_outputs(nano):
    with torch.inference_mode():
        boxes, scores = nano(torch.rand(1, 3, 416, 416) * 255)
    cells = sum((416 // s) ** 2 for s in (8, 16, 32))
    assert boxes.shape == (1, cells, 4) and scores.shape == (1, cells, 80)
    assert float(scores.min()) >= 0 and float(scores.max()) <= 1
    assert bool((boxes[..., 2:] >= boxes[..., :2]).all())


# ----------------------------------------------------------------------------- processor


def test_preprocess_is_top_left_letterbox_bgr_unnormalised():
    image = np.full((240, 320, 3), (10, 20, 30), np.uint8)
    x, transform = YoloxProcessor().preprocess(image)
    assert x.shape == (1, 3, 416, 416) and x.dtype == np.float32
    assert x[0, :, 0, 0].tolist() == [10, 20, 30]  # BGR kept, no scaling
    assert x[0, :, 415, 0].tolist() == [114, 114, 114]  # padding below the image
    assert (transform.pad_x, transform.pad_y, transform.scale_x) == (0.0, 0.0, 1.3)


def _outputs(n: int = 3549) -> dict[str, np.ndarray]:
    return {"boxes": np.zeros((1, n, 4), np.float32), "scores": np.zeros((1, n, 80), np.float32)}


def test_decode_maps_boxes_through_letterbox():
    source = np.zeros((480, 640, 3), np.uint8)  # scale 0.65 into 416x416, image on top
    _, transform = letterbox(source, (416, 416), pad_value=114, center=False)
    out = _outputs()
    out["boxes"][0, 10] = [65, 65, 130, 195]  # -> source (100, 100, 200, 300)
    out["scores"][0, 10, 16] = 0.9  # dog
    out["boxes"][0, 11] = [66, 66, 131, 196]  # same place, same class, lower: suppressed
    out["scores"][0, 11, 16] = 0.8
    out["boxes"][0, 12] = [66, 66, 131, 196]  # same place, other class: kept (class-aware NMS)
    out["scores"][0, 12, 0] = 0.5
    out["boxes"][0, 13] = [0, 0, 50, 50]  # under the 0.3 threshold
    out["scores"][0, 13, 2] = 0.29
    dets = YoloxProcessor().decode(out, transform)
    assert dets.class_ids.tolist() == [16, 0]
    assert dets.scores.tolist() == pytest.approx([0.9, 0.5])
    assert dets.xyxy[0].tolist() == pytest.approx([100, 100, 200, 300], abs=1e-3)
    assert dets.label(0) == "dog"


def test_decode_finds_outputs_by_shape_when_renamed():
    out = _outputs()
    out["boxes"][0, 0] = [10, 10, 20, 20]
    out["scores"][0, 0, 5] = 0.7
    renamed = {"cat_17": out["boxes"], "cat_18": out["scores"]}
    _, transform = letterbox(np.zeros((416, 416, 3), np.uint8), (416, 416), center=False)
    assert YoloxProcessor().decode(renamed, transform).class_ids.tolist() == [5]


def test_decode_low_scores_give_no_detections():
    _, transform = letterbox(np.zeros((100, 100, 3), np.uint8), (416, 416), center=False)
    out = _outputs()
    out["scores"][:] = 0.29
    assert len(YoloxProcessor().decode(out, transform)) == 0


def test_decode_refuses_unknown_outputs():
    _, transform = letterbox(np.zeros((100, 100, 3), np.uint8), (416, 416), center=False)
    with pytest.raises(EdgevisionError, match="cannot find YOLOX boxes"):
        YoloxProcessor().decode({"x": np.zeros((1, 10, 7), np.float32)}, transform)


# ----------------------------------------------------------------------------- export


def test_onnx_export_parity(tmp_path, nano):
    from edgevision.backends import create_backend
    from edgevision.compare import require_parity
    from edgevision.conversion.torch_onnx import export_onnx
    from edgevision.zoo.assemble import SingleStagePredictor

    image = np.random.default_rng(0).integers(0, 255, (300, 400, 3), np.uint8)
    processor = YoloxProcessor()
    x = processor.preprocess(image)[0]
    report = export_onnx(
        nano,
        tmp_path / "yolox_nano.onnx",
        input_shape=(1, 3, 416, 416),
        output_names=("boxes", "scores"),
        parity_inputs=[x],
    )
    require_parity(report)
    assert report.passed and report.path == tmp_path / "yolox_nano.onnx"
    assert [o.name for o in report.outputs] == ["boxes", "scores"]
    assert all(o.max_abs_diff < 1e-4 * max(1.0, o.scale) and o.cosine > 0.99999 for o in report.outputs)
    assert not [p for p in tmp_path.iterdir() if p.name != "yolox_nano.onnx"]  # no temp files left
    predictor = SingleStagePredictor(create_backend("onnxruntime", report.path), processor)
    assert predictor(image).task == "detection"


def test_failed_parity_writes_nothing(tmp_path):
    from edgevision.compare import require_parity
    from edgevision.conversion.torch_onnx import export_onnx

    tiny = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    x = np.ones((1, 3, 8, 8), np.float32)
    report = export_onnx(tiny, tmp_path / "m.onnx", input_shape=(1, 3, 8, 8), parity_inputs=[x], tolerance=-1.0)
    assert not report.passed and report.path is None and not list(tmp_path.iterdir())
    with pytest.raises(EdgevisionError, match=r"output max\|diff\|"):
        require_parity(report)


def test_pt2_export_runs_on_torch_backend(tmp_path, nano):
    from edgevision.backends import create_backend
    from edgevision.conversion.torch_onnx import export_pt2

    path = export_pt2(nano, tmp_path / "yolox_nano.pt2", (1, 3, 416, 416))
    x = np.random.default_rng(1).uniform(0, 255, (1, 3, 416, 416)).astype(np.float32)
    backend = create_backend("torch", path)
    outputs = backend.run({backend.inputs[0].name: x})
    with torch.inference_mode():
        boxes, scores = nano(torch.from_numpy(x))
    got = sorted(outputs.values(), key=lambda a: a.shape[-1])
    np.testing.assert_allclose(got[0], boxes.numpy(), atol=1e-3)
    np.testing.assert_allclose(got[1], scores.numpy(), atol=1e-5)
