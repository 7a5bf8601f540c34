"""Model cards and recognition: every upstream export format decodes with no flags.

The models come from tests/upstream_models.py: tiny ONNX graphs with the exact names,
shapes and metadata of each upstream export and planted objects. Each is fed an image of
its own input size (so source pixels are input pixels) and must give back the planted
objects, after the decoder's own NMS removed the planted duplicates.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

import edgevision as ev
import upstream_models as um
from conftest import assert_clean_error, run_cli
from edgevision.errors import EdgevisionError
from edgevision.models.card import ModelCard, read_card
from edgevision.models.coco import COCO91_CLASSES

# builder, its options, the decoder it must be recognised as, and (resize, color) upstream uses
FORMATS = {
    "yolov8": (um.build_yolov8, {"imgsz": 320}, "yolov8"),
    "yolov8-no-metadata": (um.build_yolov8, {"imgsz": 320, "with_metadata": False}, "yolov8"),
    "yolov5": (um.build_yolov5, {"imgsz": 320}, "yolov5"),
    "ultralytics-nms": (um.build_ultralytics_nms, {"imgsz": 320}, "boxes-scores"),
    "yolox": (um.build_yolox, {}, "yolox"),
    "yolox-decoded": (um.build_yolox, {"decoded": True}, "yolox"),
    "nanodet-plus": (um.build_nanodet_plus, {}, "nanodet-plus"),
    "tf-ssd": (um.build_tf_ssd, {}, "tfod-ssd"),
    "tf-ssd-image-tensor": (um.build_tf_ssd, {"input_name": "image_tensor", "name_suffix": ":0"}, "tfod-ssd"),
    "tflite-ssd": (um.build_tflite_ssd, {}, "tfod-ssd"),
    "yolov7-end2end": (um.build_yolov7_end2end, {"imgsz": 320}, "boxes-scores"),
    "boxes-and-scores": (um.build_two_output, {}, "boxes-scores"),
}
RESIZE = {"letterbox-center": "letterbox", "letterbox-corner": "letterbox-corner", "stretch": "stretch"}


# Boxes + scores pairs come from many tools with as many pre-processings (this one is
# edgevision's own YOLOX layout): recognition decodes them, a card states the pre-processing.
UNKNOWN_PRE_PROCESSING = {"boxes-and-scores"}


@pytest.fixture(scope="module", params=sorted(FORMATS))
def planted(request, tmp_path_factory):
    build, options, decoder = FORMATS[request.param]
    return build(tmp_path_factory.mktemp(request.param), **options), decoder, request.param


def _image(size: tuple[int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)


def _found(detections) -> list[tuple[str, float, list[float]]]:
    return [
        (detections.class_names[c], round(float(s), 3), [round(float(v), 1) for v in box])
        for c, s, box in zip(detections.class_ids, detections.scores, detections.xyxy)
    ]


def _expected(planted) -> list[tuple[str, float, list[float]]]:
    return [(o.class_name, round(o.score, 3), [round(v, 1) for v in o.box]) for o in planted.expected]


def test_each_export_format_is_recognised_and_decodes_to_the_planted_objects(planted):
    planted, decoder, _ = planted
    model = ev.load(planted.path)
    assert model.task == "detection"
    assert f"{decoder} decoder" in model.decoding and "recognised from" in model.decoding
    found = _found(model.predict(_image(planted.input_size)))
    expected = _expected(planted)
    assert [f[:2] for f in found] == [e[:2] for e in expected]
    for (_, _, box), (_, _, want) in zip(found, expected):
        np.testing.assert_allclose(box, want, atol=0.6)


def test_recognised_pre_processing_is_the_upstream_one(planted):
    planted, _, name = planted
    if name in UNKNOWN_PRE_PROCESSING:
        return
    card = ev.load(planted.path).predictor.processor.card
    pre = planted.preprocess
    assert card.color == pre.color.lower()
    if pre.resize != "native":
        assert card.resize == RESIZE[pre.resize]
        assert tuple(card.input_size) == planted.input_size
    if pre.dtype.startswith("float"):
        np.testing.assert_allclose(card.mean, pre.mean)
        np.testing.assert_allclose(card.std, pre.std)


def test_letterbox_maps_boxes_back_to_a_wider_source_image(tmp_path):
    planted = um.build_yolov8(tmp_path, imgsz=320)
    image = _image((640, 424))
    detections = ev.load(planted.path).predict(image)
    scale, pad_y = 0.5, (320 - 212) / 2  # 640x424 fits 320x212, centred
    want = np.array([o.box for o in planted.expected], np.float32)
    want[:, [0, 2]] /= scale
    want[:, [1, 3]] = (want[:, [1, 3]] - pad_y) / scale
    want = want.clip(0, [640, 424, 640, 424])
    want = want[(want[:, 2] > want[:, 0]) & (want[:, 3] > want[:, 1])]  # a box wholly in the padding is dropped
    np.testing.assert_allclose(detections.xyxy, want, atol=1.5)


def test_tf_ssd_is_fed_the_image_unresized_and_names_coco_category_ids(tmp_path):
    planted = um.build_tf_ssd(tmp_path, image_size=(320, 240))
    model = ev.load(planted.path)
    assert "image size" in model.decoding and "NHWC uint8" in model.decoding
    detections = model.predict(_image((320, 240)))
    assert [COCO91_CLASSES[c] for c in detections.class_ids] == [o.class_name for o in planted.expected]


# ----------------------------------------------------------------------------- cards given by the user


SSD_CARD = """\
decoder: ssd-anchors
labels: labelmap.txt
score_threshold: 0.4
anchors:
  strides: [16, 32, 64, 128, 256, 512]
  min_scale: 0.2
  max_scale: 0.95
  aspect_ratios: [1.0, 2.0, 0.5, 3.0, 0.3333]
  reduce_boxes_in_lowest_layer: true
"""


@pytest.fixture(scope="module")
def user_ssd(tmp_path_factory):
    """The zoo's real SSD (raw box encodings + class logits) copied out as a user's own file."""
    import shutil

    ev.pull("ssd-mobilenetv2-oidv4")
    from edgevision.zoo.pull import pulled_dir

    folder = tmp_path_factory.mktemp("user-ssd")
    shutil.copy(pulled_dir("ssd-mobilenetv2-oidv4") / "model.onnx", folder / "detector.onnx")
    shutil.copy(pulled_dir("ssd-mobilenetv2-oidv4") / "labelmap.txt", folder / "labelmap.txt")
    return folder / "detector.onnx"


def test_a_model_nothing_recognises_gives_raw_outputs_and_says_how_to_add_a_card(user_ssd):
    model = ev.load(user_ssd)
    assert model.task == "raw"
    assert "no decoder recognised" in model.decoding and "card" in model.decoding
    assert "box_encodings" in model.decoding


def test_a_card_beside_a_real_detector_decodes_it_as_its_own_decoder_does(user_ssd, samples_cache):
    import cv2

    card = user_ssd.with_name(user_ssd.name + ".card.yaml")
    card.write_text(SSD_CARD)
    try:
        model = ev.load(user_ssd)
    finally:
        card.unlink()
    assert "card detector.onnx.card.yaml" in model.decoding
    zoo = ev.load("ssd-mobilenetv2-oidv4")
    seen = 0
    for name in ("person.jpg", "dog.jpg", "horses.jpg"):
        image = cv2.imread(str(samples_cache[name]))
        got, want = model.predict(image), zoo.predict(image)
        assert [got.class_names[c] for c in got.class_ids] == [want.class_names[c] for c in want.class_ids]
        np.testing.assert_allclose(got.xyxy, want.xyxy, atol=0.5)
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-5)
        seen += len(got)
    assert seen >= 3


def test_a_card_file_and_flags_override_recognition(tmp_path):
    planted = um.build_yolov8(tmp_path, imgsz=320)
    image = _image(planted.input_size)
    assert len(ev.load(planted.path, card={"score_threshold": 0.95}).predict(image)) == 0
    labels = tmp_path / "names.txt"
    labels.write_text("\n".join(f"thing{i}" for i in range(80)))
    card = tmp_path / "mine.yaml"
    card.write_text(f"decoder: yolov8\nlabels: {labels.name}\nscore_threshold: 0.5\n")
    model = ev.load(planted.path, card=card)
    assert str(card) in model.decoding
    assert set(model.predict(image).class_names) == {f"thing{i}" for i in range(80)}


def test_the_card_travels_inside_every_produced_file(tmp_path):
    planted = um.build_yolov8(tmp_path, imgsz=320, with_metadata=False)
    image = _image(planted.input_size)
    want = _found(ev.load(planted.path, card={"score_threshold": 0.5}).predict(image))
    ir = ev.convert(planted.path, to="openvino", output=tmp_path / "ir" / "m.xml", card={"score_threshold": 0.5})
    (tmp_path / "ir" / "m.xml.edgevision.json").unlink()  # the file alone must decode
    model = ev.load(ir.path)
    assert "card inside the model" in model.decoding
    got = _found(model.predict(image))
    assert [g[:2] for g in got] == [w[:2] for w in want]
    for (_, _, a), (_, _, b) in zip(got, want):
        np.testing.assert_allclose(a, b, atol=0.6)


def test_card_mistakes_are_one_sentence(tmp_path):
    bad = tmp_path / "bad.yaml"
    for text, needle in [
        ("decoder: yolo9000\n", "unknown decoder"),
        ("decoder: yolov8\nstd: 0\n", "std must not be 0"),
        ("decoder: [unclosed\n", "cannot be parsed"),
        ("- just\n- a list\n", "must be a mapping"),
        ("decoder: yolov8\ncolour: rgb\n", "colour"),
    ]:
        bad.write_text(text)
        with pytest.raises(EdgevisionError, match=needle):
            read_card(bad)
    with pytest.raises(EdgevisionError, match="input_size"):
        ModelCard.model_validate({"decoder": "yolov8", "input_size": [0, 3]}) if False else ev.load(
            um.build_yolov8(tmp_path, imgsz=320).path, card={"input_size": (0, 3)}
        )


def test_a_broken_card_inside_a_model_is_one_sentence(tmp_path, samples_cache):
    import onnx

    source = onnx.load(str(um.build_yolov8(tmp_path, imgsz=320).path))
    source.metadata_props.add(key="edgevision.card", value="{not json")
    broken = tmp_path / "broken.onnx"
    onnx.save(source, str(broken))
    done = run_cli("predict", str(broken), str(samples_cache["person.jpg"]), "--no-save")
    assert_clean_error(done, "not valid JSON")


def test_cli_prints_the_decoding_line_and_takes_card_flags(tmp_path):
    planted = um.build_yolov8(tmp_path, imgsz=320, with_metadata=False)
    import cv2

    cv2.imwrite(str(tmp_path / "img.png"), _image(planted.input_size))
    done = run_cli("predict", str(planted.path), str(tmp_path / "img.png"), "--json", "-", "--no-save")
    assert done.returncode == 0, done.stderr
    assert "recognised from one output [1, 84, 2100]" in done.stderr
    objects = json.loads(done.stdout.splitlines()[0])["objects"]
    assert [o["label"] for o in objects] == [o.class_name for o in planted.expected]
    done = run_cli(
        "predict",
        str(planted.path),
        str(tmp_path / "img.png"),
        "--json",
        "-",
        "--no-save",
        "--labels",
        "a,b" + ",c" * 78,
    )
    assert done.returncode == 0, done.stderr
    assert {o["label"] for o in json.loads(done.stdout.splitlines()[0])["objects"]} <= {"a", "b", "c"}
    assert_clean_error(
        run_cli("predict", str(planted.path), str(tmp_path / "img.png"), "--decoder", "nope"), "unknown decoder"
    )
    assert_clean_error(
        run_cli("predict", str(planted.path), str(tmp_path / "img.png"), "--input-size", "big"), "--input-size"
    )


def test_zoo_models_refuse_a_card_but_take_thresholds(samples_cache):
    with pytest.raises(EdgevisionError, match="only --score-threshold and --iou-threshold apply"):
        ev.load("nanodet-m", card={"input_size": [416, 416]})
    with pytest.raises(EdgevisionError, match="a whole card is for model files"):
        ev.load("nanodet-m", card={"decoder": "yolox", "labels": ["a"]})
    image = cv2.imread(str(samples_cache["horses.jpg"]))
    found = {t: len(ev.load("nanodet-m", card={"score_threshold": t})(image)) for t in (0.05, 0.35, 0.9)}
    assert found[0.05] > found[0.35] > found[0.9]  # the threshold set is the one decoding uses
    assert len(ev.load("nanodet-m")(image)) == found[0.35]  # nanodet-m's own threshold


def test_a_file_made_from_a_zoo_model_takes_thresholds_from_the_command_line(tmp_path, samples_cache):
    from edgevision.zoo.pull import model_file

    ev.load("nanodet-m")  # pulled
    onnx = model_file("nanodet-m", "onnx")
    result = run_cli(
        "predict",
        str(onnx),
        str(samples_cache["horses.jpg"]),
        "--score-threshold",
        "0.05",
        "--no-save",
        "--json",
        str(tmp_path / "low.jsonl"),
    )
    assert result.returncode == 0, result.stderr
    low = json.loads((tmp_path / "low.jsonl").read_text().splitlines()[0])["objects"]
    assert low and min(o["score"] for o in low) < 0.35


# ----------------------------------------------------------------------------- the project's own YOLOX


@pytest.mark.parametrize("decoded", [False, True], ids=["official-export", "decode-in-inference"])
def test_official_yolox_layout_decodes_as_the_zoo_decodes_the_same_network(tmp_path, samples_cache, decoded):
    """edgevision's yolox-nano exported in the official layout: the generic decoder's boxes and
    scores for every grid cell equal the zoo export's (the grid decode there is in the graph)."""
    import cv2

    from edgevision.models.decoders.yolox import yolox_candidates

    official = ev.load(um.export_official_yolox(tmp_path, decoded=decoded))
    assert "yolox decoder" in official.decoding and "letterbox-corner, BGR, (x - 0) / 1" in official.decoding
    zoo = ev.load("yolox-nano", random_weights=True)
    image = cv2.imread(str(samples_cache["person.jpg"]))
    feeds, _ = official.predictor.feeds(image)
    zoo_feeds, _ = zoo.predictor.feeds(image)
    np.testing.assert_array_equal(next(iter(feeds.values())), next(iter(zoo_feeds.values())))
    rows = official.predictor.backend.run(feeds)["output"][0]
    xyxy, scores = yolox_candidates(rows, (416, 416))
    zoo_out = zoo.predictor.backend.run(zoo_feeds)
    np.testing.assert_allclose(xyxy, zoo_out["boxes"][0], atol=2e-3, rtol=1e-4)
    np.testing.assert_allclose(scores, zoo_out["scores"][0], atol=1e-5)


@pytest.mark.slow
def test_int8_keeps_a_head_that_joins_boxes_and_probabilities_in_float(tmp_path, short_video):
    """Official YOLOX concatenates box values and sigmoid scores: all-int8 on ONNX Runtime scored
    0.000 against fp32; with that output tail kept float it agrees."""
    from edgevision.variants import read_meta

    source = um.export_official_yolox(tmp_path)
    out = tmp_path / "int8.onnx"
    result = ev.quantize(source, backend="ort", precision="int8", calib=str(short_video), calib_count=16, output=out)
    assert result.metric.startswith("detection mAP") and result.agreement >= 0.95
    meta = read_meta(out)
    assert "/Concat" in meta.excluded and any("head-output nodes in float" in n for n in meta.notes)
    assert meta.card["decoder"] == "yolox"  # the recognised card travels with the file
