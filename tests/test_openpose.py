"""OpenPose body: the port's checkpoint layout, strict loading, PAF decoding, ONNX export."""

from __future__ import annotations

import numpy as np
import pytest

from edgevision.errors import EdgevisionError
from edgevision.models.openpose import (
    EDGES,
    KEYPOINT_NAMES,
    LIMB_PAF_CHANNELS,
    LIMBS,
    OpenPoseOptions,
    OpenPoseProcessor,
    build_openpose,
    find_peaks,
    limb_scores,
    load_openpose_checkpoint,
    match_limbs,
)
from edgevision.models.transforms import letterbox
from edgevision.zoo import get_spec

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def body():
    torch.manual_seed(0)
    return build_openpose()


@pytest.fixture(scope="module")
def port_checkpoint(tmp_path_factory, body):
    """A random checkpoint in the port's flat layout (``conv1_1.weight`` ...).

    Weights are He-scaled so activations keep their size through the 60 convs and the
    export parity check compares outputs of order 1, not vanishing ones.
    """
    gen = torch.Generator().manual_seed(2)
    state = {k.split(".", 1)[1]: _he_normal(v.shape, gen) for k, v in body.state_dict().items()}
    path = tmp_path_factory.mktemp("openpose") / "body_pose_model.pth"
    torch.save(state, path)
    return path, state


def _he_normal(shape, gen) -> torch.Tensor:
    if len(shape) == 1:
        return torch.randn(shape, generator=gen) * 0.01
    fan_in = shape[1] * shape[2] * shape[3]
    return torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5


def test_zoo_entry():
    spec = get_spec("openpose-body")
    assert spec.task == "pose" and spec.input_size == (368, 368)
    assert "non-commercial" in spec.license
    assert spec.weights.filename == "body_pose_model.pth"
    assert spec.processor().task == "pose"


@pytest.mark.parametrize(
    ("key", "shape"),
    [
        ("model0.conv1_1.weight", (64, 3, 3, 3)),
        ("model0.conv4_2.weight", (512, 512, 3, 3)),
        ("model0.conv4_4_CPM.bias", (128,)),
        ("model1_1.conv5_1_CPM_L1.weight", (128, 128, 3, 3)),
        ("model1_1.conv5_5_CPM_L1.weight", (38, 512, 1, 1)),
        ("model1_2.conv5_5_CPM_L2.weight", (19, 512, 1, 1)),
        ("model2_1.Mconv1_stage2_L1.weight", (128, 185, 7, 7)),
        ("model2_2.Mconv7_stage2_L2.weight", (19, 128, 1, 1)),
        ("model6_1.Mconv6_stage6_L1.weight", (128, 128, 1, 1)),
        ("model6_2.Mconv7_stage6_L2.bias", (19,)),
    ],
)
def test_port_keys_and_shapes(body, key, shape):
    assert tuple(body.state_dict()[key].shape) == shape


def test_key_count_params_and_flat_names(body):
    from edgevision.models.flops import count_params

    state = body.state_dict()
    assert len(state) == 184  # 92 convs, weight + bias each
    assert count_params(body) / 1e6 == pytest.approx(52.31, abs=0.01)
    flat = {k.split(".", 1)[1] for k in state}
    assert {"conv1_1.weight", "conv5_1_CPM_L1.weight", "Mconv1_stage2_L1.weight", "Mconv7_stage6_L2.bias"} <= flat
    assert len(flat) == len(state)  # the port's flat names are unique


def test_network_outputs_stride_8(body):
    with torch.inference_mode():
        pafs, heatmaps = body(torch.zeros(1, 3, 64, 96))
    assert pafs.shape == (1, 38, 8, 12) and heatmaps.shape == (1, 19, 8, 12)


# ----------------------------------------------------------------------------- checkpoints


def test_port_checkpoint_loads(port_checkpoint):
    path, state = port_checkpoint
    model = build_openpose()
    load_openpose_checkpoint(model, path)
    loaded = model.state_dict()
    assert torch.equal(loaded["model2_2.Mconv7_stage2_L2.weight"], state["Mconv7_stage2_L2.weight"])
    assert torch.equal(loaded["model0.conv1_1.bias"], state["conv1_1.bias"])


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.pop("Mconv3_stage4_L2.weight"), r"missing key 'model4_2\.Mconv3_stage4_L2\.weight'"),
        (
            lambda s: s.update({"conv5_1_CPM_L2.weight": torch.zeros(128, 128, 1, 1)}),
            r"'model1_2\.conv5_1_CPM_L2\.weight' has shape \(128, 128, 1, 1\) in the file but \(128, 128, 3, 3\)",
        ),
        (lambda s: s.update({"conv6_1.weight": torch.zeros(1)}), r"unexpected key 'conv6_1\.weight'"),
    ],
)
def test_bad_checkpoints_name_the_key(tmp_path, port_checkpoint, edit, message):
    state = dict(port_checkpoint[1])
    edit(state)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(EdgevisionError, match=message):
        load_openpose_checkpoint(build_openpose(), tmp_path / "bad.pth")


def test_non_checkpoint_is_refused(tmp_path):
    (tmp_path / "x.pth").write_text("hello")
    with pytest.raises(EdgevisionError, match="not a PyTorch checkpoint"):
        load_openpose_checkpoint(build_openpose(), tmp_path / "x.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(EdgevisionError, match="not an OpenPose body checkpoint"):
        load_openpose_checkpoint(build_openpose(), tmp_path / "list.pth")


# ----------------------------------------------------------------------------- decoding

# A standing person (input pixels, relative to the hip centre), one row per keypoint.
SKELETON = np.array(
    [
        (0, -130),
        (0, -100),
        (-30, -100),
        (-45, -60),
        (-50, -20),
        (30, -100),
        (45, -60),
        (50, -20),
        (-20, 0),
        (-22, 60),
        (-24, 120),
        (20, 0),
        (22, 60),
        (24, 120),
        (-10, -140),
        (10, -140),
        (-24, -134),
        (24, -134),
    ],
    dtype=np.float32,
)


def draw_maps(people: list[np.ndarray], input_size=(368, 368)) -> dict[str, np.ndarray]:
    """Stride-8 heatmaps (Gaussian peaks) and PAFs (unit vectors within 1 cell of each limb)."""
    w, h = input_size[0] // 8, input_size[1] // 8
    heatmaps, pafs = np.zeros((19, h, w), np.float32), np.zeros((38, h, w), np.float32)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    for joints in people:
        cells = (joints - 3.5) / 8  # cell centres sit at 8 * i + 3.5 input pixels
        for part, (cx, cy) in enumerate(cells):
            heatmaps[part] = np.maximum(heatmaps[part], np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / 2))
        for (a, b), (cx_ch, cy_ch) in zip(LIMBS, LIMB_PAF_CHANNELS):
            _draw_limb(pafs[cx_ch], pafs[cy_ch], cells[a], cells[b], xs, ys)
    heatmaps[18] = 1 - heatmaps[:18].max(axis=0)
    return {"pafs": pafs[None], "heatmaps": heatmaps[None]}


def _draw_limb(px, py, a, b, xs, ys) -> None:
    vec = b - a
    length = float(np.hypot(*vec))
    unit = vec / length
    t = ((xs - a[0]) * unit[0] + (ys - a[1]) * unit[1]) / length
    across = np.abs((xs - a[0]) * unit[1] - (ys - a[1]) * unit[0])
    on = (t >= -0.1) & (t <= 1.1) & (across <= 1.0)
    px[on], py[on] = unit[0], unit[1]


def _decode(people, source_size=(368, 368)):
    source = np.zeros((source_size[1], source_size[0], 3), np.uint8)
    _, transform = letterbox(source, (368, 368), pad_value=128, center=False)
    return OpenPoseProcessor().decode(draw_maps(people), transform), transform


def test_two_people_decode_to_their_skeletons():
    truth = [SKELETON + (100, 200), SKELETON + (268, 210)]
    poses, _ = _decode(truth)
    assert len(poses) == 2
    assert poses.keypoint_names == KEYPOINT_NAMES and poses.edges == EDGES
    order = np.argsort(poses.keypoints[:, 1, 0])  # by neck x
    for person, joints in zip(poses.keypoints[order], truth):
        assert np.all(person[:, 2] > 0.5)
        np.testing.assert_allclose(person[:, :2], joints, atol=2.0)


def test_keypoints_are_mapped_back_through_the_letterbox():
    truth_input = SKELETON + (120, 160)  # inside the 368x300 image area
    poses, transform = _decode([truth_input], source_size=(736, 600))  # scale 0.5
    assert transform.scale_x == pytest.approx(0.5)
    assert len(poses) == 1
    np.testing.assert_allclose(poses.keypoints[0, :, :2], truth_input / 0.5, atol=4.0)


@pytest.mark.parametrize(("parts", "people"), [(3, 0), (4, 1)])
def test_people_need_four_parts(parts, people):
    maps = draw_maps([SKELETON + (150, 200)])
    maps["heatmaps"][0, parts:18] = 0  # keep nose, neck, r_shoulder (, r_elbow)
    _, transform = letterbox(np.zeros((368, 368, 3), np.uint8), (368, 368), center=False)
    assert len(OpenPoseProcessor().decode(maps, transform)) == people


def test_empty_maps_give_no_people():
    _, transform = letterbox(np.zeros((368, 368, 3), np.uint8), (368, 368), center=False)
    outputs = {"pafs": np.zeros((1, 38, 46, 46), np.float32), "heatmaps": np.zeros((1, 19, 46, 46), np.float32)}
    poses = OpenPoseProcessor().decode(outputs, transform)
    assert len(poses) == 0 and poses.keypoints.shape == (0, 18, 3)


def test_outputs_found_by_channels_when_renamed():
    maps = draw_maps([SKELETON + (150, 200)])
    renamed = {"out0": maps["heatmaps"], "out1": maps["pafs"].transpose(0, 2, 3, 1)}  # NHWC PAFs
    _, transform = letterbox(np.zeros((368, 368, 3), np.uint8), (368, 368), center=False)
    assert len(OpenPoseProcessor().decode(renamed, transform)) == 1
    with pytest.raises(EdgevisionError, match="cannot find OpenPose"):
        OpenPoseProcessor().decode({"x": np.zeros((1, 5, 4, 4), np.float32)}, transform)


def test_find_peaks_uses_four_neighbours_and_threshold():
    heat = np.zeros((60, 60), np.float32)
    heat[10, 20] = 20.0  # smoothed peak 20 / (2 pi 9) = 0.35
    heat[40, 45] = 5.0  # smoothed 0.09, under the 0.1 threshold: no peak
    peaks = find_peaks(heat)
    assert peaks[:, :2].tolist() == [[20, 10]] and peaks[0, 2] == 20.0  # unsmoothed score


def test_limb_against_the_field_is_rejected():
    options = OpenPoseOptions()
    paf = np.zeros((50, 50, 2), np.float32)
    paf[20, 5:45] = (1.0, 0.0)  # field points +x along row 20
    a = np.array([[10, 20, 1.0]], np.float32)
    b = np.array([[40, 20, 1.0], [40, 30, 1.0]], np.float32)
    forward = limb_scores(a, b, paf, image_height=100, options=options)
    assert forward[0, 0] == pytest.approx(1.0) and np.isnan(forward[0, 1])
    # limbs longer than half the image height pay 0.5 * H / length - 1
    assert limb_scores(a, b[:1], paf, image_height=50, options=options)[0, 0] == pytest.approx(1 + 25 / 30 - 1)
    assert np.isnan(limb_scores(b[:1], a, paf, image_height=100, options=options)).all()  # against the field
    assert match_limbs(np.array([[0.9, 0.8], [0.7, np.nan]])) == [(0, 0, 0.9)]


def test_preprocess_pads_with_128_and_scales():
    image = np.full((100, 200, 3), 255, np.uint8)
    x, transform = OpenPoseProcessor().preprocess(image)
    assert x.shape == (1, 3, 368, 368) and x.dtype == np.float32
    assert x[0, 0, 0, 0] == pytest.approx(255 / 256 - 0.5)
    assert x[0, 0, 367, 0] == pytest.approx(0.0)  # pad value 128 -> 0
    assert transform.scale_x == pytest.approx(1.84)


# ----------------------------------------------------------------------------- export


def test_onnx_export_parity_reduced_input(tmp_path, body, port_checkpoint):
    from edgevision.compare import require_parity
    from edgevision.conversion.torch_onnx import export_onnx

    load_openpose_checkpoint(body, port_checkpoint[0])
    image = np.random.default_rng(0).integers(0, 255, (120, 160, 3), np.uint8)
    x = OpenPoseProcessor(input_size=(184, 184)).preprocess(image)[0]
    report = export_onnx(
        body,
        tmp_path / "openpose.onnx",
        input_shape=(1, 3, 184, 184),
        output_names=("pafs", "heatmaps"),
        parity_inputs=[x],
    )
    require_parity(report)
    assert [o.name for o in report.outputs] == ["pafs", "heatmaps"]
    assert all(o.scale > 0.1 and o.cosine > 0.99999 for o in report.outputs)  # outputs of real size agree
    assert report.file_bytes > 200e6 and sorted(p.name for p in tmp_path.iterdir()) == ["openpose.onnx"]
