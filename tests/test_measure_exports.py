"""Measuring exported models: MACs at a dynamic input size, ops inside Loop bodies, order-invariant agreement."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import TensorProto, helper, numpy_helper

from conftest import run_cli
from edgevision.compare import (
    INDEX_ALIGNED,
    check_parity,
    greedy_match_rows,
    mean_cosine,
    pair_outputs,
    raw_agreement,
    stack_outputs,
    task_agreement,
    tensor_agreement,
)
from edgevision.errors import EdgevisionError
from edgevision.inspect import inspect_model, parse_input_size
from edgevision.inspect.graph import load_onnx_at, to_dot

CONV_MACS_PER_PIXEL = 8 * 3 * 3 * 3  # a 3x3 conv from 3 to 8 channels, per output pixel
BODY_CONV_MACS = 16 * 16 * 4 * 3  # the 1x1 conv from 3 to 4 channels on the 16x16 resized image in the loop body


def _save(graph, path, opset: int = 17):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def _run(path, feeds: dict) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


def _conv_weight() -> onnx.TensorProto:
    return numpy_helper.from_array(np.random.default_rng(0).normal(size=(8, 3, 3, 3)).astype(np.float32), "w")


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def dynamic_conv(tmp_path_factory):
    """A 3x3 conv on an NCHW input whose batch, height and width are dynamic."""
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "height", "width"])
    out = helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 8, "height", "width"])
    conv = helper.make_node("Conv", ["images", "w"], ["features"], name="conv", pads=[1, 1, 1, 1])
    graph = helper.make_graph([conv], "dynamic_conv", [images], [out], [_conv_weight()])
    return _save(graph, tmp_path_factory.mktemp("measure") / "dynamic_conv.onnx")


@pytest.fixture(scope="module")
def dynamic_nhwc_conv(tmp_path_factory):
    """The same conv behind an NHWC input [1, ?, ?, 3], as TF Object Detection API exports have."""
    images = helper.make_tensor_value_info("image_tensor", TensorProto.FLOAT, [1, None, None, 3])
    out = helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 8, None, None])
    nodes = [
        helper.make_node("Transpose", ["image_tensor"], ["nchw"], name="to_nchw", perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "w"], ["features"], name="conv", pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(nodes, "dynamic_nhwc_conv", [images], [out], [_conv_weight()])
    return _save(graph, tmp_path_factory.mktemp("measure") / "dynamic_nhwc_conv.onnx")


def _loop_body() -> onnx.GraphProto:
    """Two iterations of post-processing: TopK and NMS on the outer scores, Resize and a 1x1 conv of the image."""
    f32 = TensorProto.FLOAT
    inputs = [
        helper.make_tensor_value_info("iteration", TensorProto.INT64, []),
        helper.make_tensor_value_info("keep_going", TensorProto.BOOL, []),
    ]
    outputs = [
        helper.make_tensor_value_info("keep_going_out", TensorProto.BOOL, []),
        helper.make_tensor_value_info("top_scores", f32, [1, 1, 5]),
        helper.make_tensor_value_info("kept", TensorProto.INT64, [None, 3]),
        helper.make_tensor_value_info("body_features", f32, [1, 4, 16, 16]),
    ]
    consts = [
        numpy_helper.from_array(np.array([5], np.int64), "k"),
        numpy_helper.from_array(np.array([10], np.int64), "max_boxes"),
        numpy_helper.from_array(np.array([0.5], np.float32), "iou"),
        numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
        numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "body_w"),
    ]
    nodes = [
        helper.make_node("Identity", ["keep_going"], ["keep_going_out"], name="keep"),
        helper.make_node("TopK", ["scores", "k"], ["top_scores", "top_index"], name="topk"),
        helper.make_node("NonMaxSuppression", ["boxes", "scores", "max_boxes", "iou"], ["kept"], name="nms"),
        helper.make_node("Resize", ["image", "", "scales"], ["resized"], name="resize", mode="nearest"),
        helper.make_node("Conv", ["resized", "body_w"], ["body_features"], name="body_conv"),
    ]
    return helper.make_graph(nodes, "body", inputs, outputs, consts)


@pytest.fixture(scope="module")
def loop_model(tmp_path_factory):
    """A main graph whose only work is a Loop holding TopK, NonMaxSuppression, Resize and a conv."""
    f32 = TensorProto.FLOAT
    inputs = [
        helper.make_tensor_value_info("boxes", f32, [1, 20, 4]),
        helper.make_tensor_value_info("scores", f32, [1, 1, 20]),
        helper.make_tensor_value_info("image", f32, [1, 3, 8, 8]),
    ]
    outputs = [
        helper.make_tensor_value_info("top_scores_all", f32, [2, 1, 1, 5]),
        helper.make_tensor_value_info("kept_all", TensorProto.INT64, [2, None, 3]),
        helper.make_tensor_value_info("features_all", f32, [2, 1, 4, 16, 16]),
    ]
    consts = [
        numpy_helper.from_array(np.array(2, np.int64), "trips"),
        numpy_helper.from_array(np.array(True), "go"),
    ]
    loop = helper.make_node(
        "Loop", ["trips", "go"], ["top_scores_all", "kept_all", "features_all"], name="post", body=_loop_body()
    )
    graph = helper.make_graph([loop], "loop_model", inputs, outputs, consts)
    return _save(graph, tmp_path_factory.mktemp("measure") / "loop.onnx")


def _nms_graph(name: str, *, reversed_rows: bool) -> onnx.GraphProto:
    """NMS over 30 boxes, then the kept boxes, scores and classes as [1, K, 4], [1, K], [1, K].

    With ``reversed_rows`` the kept objects are listed last first: the same set in another order.
    """
    f32 = TensorProto.FLOAT
    inputs = [
        helper.make_tensor_value_info("boxes", f32, [1, 30, 4]),
        helper.make_tensor_value_info("scores", f32, [1, 1, 30]),
        helper.make_tensor_value_info("classes", f32, [30]),
    ]
    outputs = [
        helper.make_tensor_value_info("detection_boxes", f32, [1, None, 4]),
        helper.make_tensor_value_info("detection_scores", f32, [1, None]),
        helper.make_tensor_value_info("detection_classes", f32, [1, None]),
    ]
    consts = [
        numpy_helper.from_array(np.array([30], np.int64), "max_boxes"),
        numpy_helper.from_array(np.array([0.5], np.float32), "iou"),
        numpy_helper.from_array(np.array([2], np.int64), "column"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array([-1], np.int64), "last"),
        numpy_helper.from_array(np.array([np.iinfo(np.int64).min], np.int64), "before_first"),
        numpy_helper.from_array(np.array([0], np.int64), "axis0"),
    ]
    order = "index_reversed" if reversed_rows else "index"
    nodes = [
        helper.make_node("NonMaxSuppression", ["boxes", "scores", "max_boxes", "iou"], ["kept"]),
        helper.make_node("Gather", ["kept", "column"], ["index_2d"], axis=1),
        helper.make_node("Squeeze", ["index_2d", "axis1"], ["index"]),
        helper.make_node("Slice", ["index", "last", "before_first", "axis0", "last"], ["index_reversed"]),
        helper.make_node("Gather", ["boxes", order], ["detection_boxes"], axis=1),
        helper.make_node("Squeeze", ["scores", "axis1"], ["scores_2d"]),
        helper.make_node("Gather", ["scores_2d", order], ["detection_scores"], axis=1),
        helper.make_node("Unsqueeze", ["classes", "axis0"], ["classes_2d"]),
        helper.make_node("Gather", ["classes_2d", order], ["detection_classes"], axis=1),
    ]
    return helper.make_graph(nodes, name, inputs, outputs, consts)


@pytest.fixture(scope="module")
def nms_outputs(tmp_path_factory):
    """Outputs of two NMS models that keep the same boxes and list them in opposite orders."""
    folder = tmp_path_factory.mktemp("nms")
    rng = np.random.default_rng(3)
    corners = rng.uniform(0, 200, (1, 30, 2))
    feeds = {
        "boxes": np.concatenate([corners, corners + rng.uniform(10, 60, (1, 30, 2))], axis=-1).astype(np.float32),
        "scores": rng.uniform(0, 1, (1, 1, 30)).astype(np.float32),
        "classes": rng.integers(0, 5, 30).astype(np.float32),
    }
    ref = _run(_save(_nms_graph("ordered", reversed_rows=False), folder / "ordered.onnx"), feeds)
    cand = _run(_save(_nms_graph("reversed", reversed_rows=True), folder / "reversed.onnx"), feeds)
    return ref, cand


# ----------------------------------------------------------------------------- MACs at an input size


def test_dynamic_input_counted_at_default_size_and_says_so(dynamic_conv):
    report = inspect_model(dynamic_conv)
    assert report.macs == 640 * 640 * CONV_MACS_PER_PIXEL
    assert report.counted_at.shapes == {"images": (1, 3, 640, 640)}
    assert report.counted_at.assumed == {"images": {"batch": 1, "height": 640, "width": 640}}
    facts = report.to_dict()["macs_counted_at"]
    assert facts["shapes"] == {"images": [1, 3, 640, 640]} and facts["assumed"]["images"]["height"] == 640


@pytest.mark.parametrize(
    "fixture, feeds",
    [
        ("dynamic_conv", {"images": np.zeros((1, 3, 24, 32), np.float32)}),
        ("dynamic_nhwc_conv", {"image_tensor": np.zeros((1, 24, 32, 3), np.float32)}),
    ],
)
def test_input_size_is_width_by_height_in_either_layout(fixture, feeds, request):
    path = request.getfixturevalue(fixture)
    assert _run(path, feeds)["features"].shape == (1, 8, 24, 32)  # a valid model: H and W really are dynamic
    report = inspect_model(path, input_size="320x240")
    assert report.macs == 320 * 240 * CONV_MACS_PER_PIXEL
    assumed = next(iter(report.counted_at.assumed.values()))
    assert assumed["width"] == 320 and assumed["height"] == 240


def test_static_model_keeps_its_size_and_assumes_nothing(tiny_model_files):
    report = inspect_model(tiny_model_files["onnxruntime"], input_size="640x640")
    assert report.macs == 16 * 16 * CONV_MACS_PER_PIXEL + 8 * 4  # the tiny model's own 16x16, not 640x640
    assert report.counted_at.assumed == {}


def test_cli_json_reports_the_assumed_size(dynamic_conv):
    done = run_cli("inspect", dynamic_conv, "--input-size", "64x32", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["macs"] == 64 * 32 * CONV_MACS_PER_PIXEL
    assert data["macs_counted_at"]["assumed"]["images"] == {"batch": 1, "height": 32, "width": 64}
    text = run_cli("inspect", dynamic_conv)
    assert text.returncode == 0 and "assumed" in text.stdout and "640" in text.stdout


@pytest.mark.parametrize("text", ["640", "640x", "0x480", "axb", "640x480x3", ""])
def test_bad_input_size_is_one_sentence(text):
    with pytest.raises(EdgevisionError, match="WIDTHxHEIGHT"):
        parse_input_size(text)


# ----------------------------------------------------------------------------- Loop bodies


def test_loop_runs_in_onnxruntime(loop_model):
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 50, (1, 20, 2))
    out = _run(
        loop_model,
        {
            "boxes": np.concatenate([corners, corners + 10], -1).astype(np.float32),
            "scores": rng.uniform(0, 1, (1, 1, 20)).astype(np.float32),
            "image": np.ones((1, 3, 8, 8), np.float32),
        },
    )
    assert out["features_all"].shape == (2, 1, 4, 16, 16) and out["top_scores_all"].shape == (2, 1, 1, 5)


def test_ops_inside_loop_body_are_counted(loop_model):
    report = inspect_model(loop_model)
    for op in ("Loop", "TopK", "NonMaxSuppression", "Resize", "Conv"):
        assert report.ops[op] == 1, op
    assert report.subgraphs["post/body"]["NonMaxSuppression"] == 1
    assert report.macs == BODY_CONV_MACS
    conv = next(layer for layer in report.layers if layer.op == "Conv")
    assert conv.graph == "post/body" and conv.name == "post/body/body_conv" and conv.macs == BODY_CONV_MACS
    assert report.to_dict()["subgraphs"]["post/body"]["TopK"] == 1


def test_cli_lists_loop_bodies(loop_model):
    done = run_cli("inspect", loop_model)
    assert done.returncode == 0, done.stderr
    assert "post/body" in done.stdout and "NonMaxSuppression" in done.stdout


def test_graph_source_opens_loop_bodies(loop_model):
    model, _ = load_onnx_at(loop_model)
    opened, closed = to_dot(model), to_dot(model, bodies=False)
    assert "cluster_" in opened and "TopK" in opened and "NonMaxSuppression" in opened
    assert "TopK" not in closed and "Loop" in closed


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot is not installed (see tools/system-packages)")
def test_graph_drawing_shows_loop_bodies(loop_model, tmp_path):
    out = tmp_path / "loop.svg"
    done = run_cli("inspect", loop_model, "--graph", out)
    assert done.returncode == 0, done.stderr
    svg = out.read_text()
    assert 'class="cluster"' in svg and "NonMaxSuppression" in svg and "Resize" in svg
    done = run_cli("inspect", loop_model, "--graph", out, "--no-subgraphs")
    assert done.returncode == 0 and "NonMaxSuppression" not in out.read_text()


# ----------------------------------------------------------------------------- order-invariant agreement


def _index_aligned(reference: list[dict], candidate: list[dict]) -> float:
    """The former raw agreement: cosine of outputs flattened in index order."""
    ref, cand = pair_outputs(stack_outputs(reference), stack_outputs(candidate))
    return mean_cosine(tensor_agreement(ref, cand))


def test_nms_outputs_in_another_order_agree(nms_outputs):
    ref, cand = nms_outputs
    assert ref["detection_boxes"].shape[1] >= 3  # enough kept objects for the order to matter
    assert _index_aligned([ref], [cand]) < 0.99
    found = raw_agreement([ref], [cand])
    assert found.value == pytest.approx(1.0, abs=1e-9)
    assert set(found.comparisons.values()) == {"rows matched on 'detection_boxes'"}
    assert task_agreement("raw", [ref], [cand]) == pytest.approx(1.0, abs=1e-9)


def test_parity_of_nms_outputs_in_another_order_passes(nms_outputs):
    ref, cand = nms_outputs
    report = check_parity(ref, cand)
    assert report.passed and all(o.comparison.startswith("rows matched") for o in report.outputs)
    assert report.to_dict()["outputs"][0]["comparison"] == "rows matched on 'detection_boxes'"


def test_one_permutation_serves_all_parallel_outputs(nms_outputs):
    """Scores ordered on their own would agree too; ordered by the boxes' matching they must disagree here."""
    ref, cand = nms_outputs
    shuffled = dict(cand, detection_scores=np.roll(cand["detection_scores"], 1, axis=1))
    found = raw_agreement([ref], [shuffled])
    assert found.figures["detection_boxes"]["cosine"] == pytest.approx(1.0)
    assert found.figures["detection_scores"]["cosine"] < 0.999


def test_outputs_in_the_same_order_stay_index_aligned(nms_outputs):
    ref, _ = nms_outputs
    close = {k: v + np.float32(1e-4) for k, v in ref.items()}
    found = raw_agreement([ref], [close])
    assert set(found.comparisons.values()) == {INDEX_ALIGNED} and found.value > 0.999


@pytest.mark.parametrize("shape", [(1, 1000), (1, 40, 32)])  # class logits; a map with rows wider than 16
def test_outputs_whose_order_matters_are_not_sets(shape):
    value = np.random.default_rng(0).normal(size=shape)
    found = raw_agreement([{"out": value}], [{"out": value[:, ::-1]}])
    assert found.comparisons["out"] == INDEX_ALIGNED and found.value < 0.5


@pytest.mark.parametrize(
    "ref_rows, cand_rows, expected",
    [
        (0, 0, 1.0),  # nothing listed on either side
        (0, 3, 0.0),  # everything listed is invented
        (3, 0, 0.0),  # everything is missed
    ],
)
def test_empty_row_sets(ref_rows, cand_rows, expected):
    rng = np.random.default_rng(0)
    ref = {"boxes": rng.uniform(1, 9, (1, ref_rows, 4)), "scores": rng.uniform(0, 1, (1, ref_rows))}
    cand = {"boxes": rng.uniform(1, 9, (1, cand_rows, 4)), "scores": rng.uniform(0, 1, (1, cand_rows))}
    assert raw_agreement([ref], [cand]).value == pytest.approx(expected)


def _row_sets(draw, *, min_rows: int = 0):
    rows = draw(st.integers(min_rows, 25))
    features = draw(st.integers(2, 16))
    lead = draw(st.sampled_from([(), (1,)]))
    values = st.floats(1, 100, allow_nan=False, width=32)
    boxes = draw(hnp.arrays(np.float64, (*lead, rows, features), elements=values))
    scores = draw(hnp.arrays(np.float64, (*lead, rows), elements=values))
    order = draw(st.permutations(range(rows)))
    return {"boxes": boxes, "scores": scores}, list(order)


@st.composite
def permuted_row_sets(draw):
    return _row_sets(draw)


@st.composite
def changed_row_sets(draw):
    outputs, order = _row_sets(draw, min_rows=1)
    row = draw(st.integers(0, len(order) - 1))
    column = draw(st.integers(0, outputs["boxes"].shape[-1] - 1))
    return outputs, order, (row, column), draw(st.floats(1, 50))


@settings(max_examples=60, deadline=None)
@given(permuted_row_sets())
def test_any_permutation_of_rows_agrees_fully(case):
    outputs, order = case
    permuted = {"boxes": outputs["boxes"][..., order, :], "scores": outputs["scores"][..., order]}
    assert raw_agreement([outputs], [permuted]).value == pytest.approx(1.0, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(changed_row_sets())
def test_a_changed_value_lowers_agreement(case):
    outputs, order, (row, column), delta = case
    boxes = outputs["boxes"][..., order, :].copy()
    boxes[..., row, column] += delta
    changed = {"boxes": boxes, "scores": outputs["scores"][..., order]}
    assert raw_agreement([outputs], [changed]).value < 1.0 - 1e-12


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 60), st.integers(2, 6)), elements=st.integers(0, 5)), st.data())
def test_greedy_match_pairs_every_permuted_row_exactly(rows, data):
    order = np.array(data.draw(st.permutations(range(len(rows)))))
    r, c = greedy_match_rows(rows, rows[order])
    assert sorted(r.tolist()) == list(range(len(rows))) and np.array_equal(rows[r], rows[order][c])
