"""Every user mistake is one sentence before any expensive work, and leaves nothing behind.

Each row of ``CASES`` runs the real ``edgevision`` command in a fresh process, in an empty
working folder, with an empty model cache: it must exit 2 with one line on stderr (no
traceback) holding the expected words, and no file may appear or vanish in the working
folder, the inputs folder or the cache (hidden files count). ``{name}`` in an argument is
the path of input ``name`` built once by the ``inputs`` fixture.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import assert_clean_error, run_cli
from edgevision.errors import EdgevisionError

# ----------------------------------------------------------------------------- inputs


def write_conv_onnx(path: Path, *, inputs: int = 1) -> Path:
    """A 3x3 conv net on NHWC float32 [1, 16, 16, 3] images; extra inputs are added to its output."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Transpose", ["images"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "w"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("ReduceMean", ["conv"], ["pooled"], axes=[2, 3], keepdims=0),
    ]
    graph_inputs = [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 16, 16, 3])]
    last = "pooled"
    for i in range(1, inputs):
        graph_inputs.append(helper.make_tensor_value_info(f"extra{i}", TensorProto.FLOAT, [1, 4]))
        nodes.append(helper.make_node("Add", [last, f"extra{i}"], [f"sum{i}"]))
        last = f"sum{i}"
    nodes.append(helper.make_node("Identity", [last], ["scores"]))
    graph = helper.make_graph(
        nodes,
        "tiny",
        graph_inputs,
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 4])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _write_video(path: Path, frames: int = 4) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(frames):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """Good and bad inputs, and things in the way of outputs, in one folder shared by every case."""
    folder = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    found = {"inputs": folder}
    found["onnx"] = write_conv_onnx(folder / "tiny.onnx")
    cv2.imwrite(str(folder / "img.jpg"), rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    found["img"] = folder / "img.jpg"
    found["imgdir"] = folder / "photos"
    found["imgdir"].mkdir()
    for i in range(2):
        cv2.imwrite(str(found["imgdir"] / f"p{i}.png"), rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    found["video"] = _write_video(folder / "clip.avi")
    found["emptydir"] = folder / "empty"
    found["emptydir"].mkdir()
    onnx_bytes = found["onnx"].read_bytes()
    files = {
        "trunc.onnx": onnx_bytes[: len(onnx_bytes) // 3],
        "empty.onnx": b"",
        "random.onnx": rng.bytes(700),
        "random.tflite": rng.bytes(700),
        "random.pt2": rng.bytes(700),
        "lonely.xml": b"<?xml version='1.0'?><net name='x' version='11'><layers/></net>",
        "badweights.xml": b"<?xml version='1.0'?><net name='x' version='11'><layers><layer id='0'/></layers></net>",
        "badweights.bin": rng.bytes(64),
        "notxml.xml": rng.bytes(300),
        "notxml.bin": rng.bytes(64),
        "weights.bin": rng.bytes(64),
        "notes.jpg": b"this is not an image",
        "afile": b"a file where a folder is needed",
        "ckpt.pth": rng.bytes(200),
        "ev-snapshots": b"a file where the event snapshots folder goes",
        "annotations.json": b"{not json",
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
        found[name] = folder / name
    for name in ("dir.mp4", "dir.jsonl", "dir.json", "dir.onnx", "dir.html", "blocked.bin"):
        (folder / name).mkdir()
        found[name] = folder / name
    found["blocked.xml"] = folder / "blocked.xml"  # its .bin is a folder
    found["ev.jsonl"] = folder / "ev.jsonl"  # its snapshot folder is a file
    return found


@pytest.fixture(scope="module")
def empty_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def tree(root: Path) -> dict[str, int]:
    """Every file and folder under ``root`` (hidden ones too), with file sizes."""
    return {str(p.relative_to(root)): (p.stat().st_size if p.is_file() else -1) for p in root.rglob("*")}


# ----------------------------------------------------------------------------- the table

VID, IMG, DIR = "{video}", "{img}", "{imgdir}"  # a video, an image and a folder of images that are fine
MODEL = "{onnx}"  # a model file that is fine

CASES = [
    # -- missing or unreadable inputs: model, source, checkpoint, calibration, data, annotations
    ("predict-missing-source", ["predict", MODEL, "missing.jpg"], ["missing.jpg does not exist"]),
    ("predict-missing-model", ["predict", "missing.onnx", IMG], ["missing.onnx does not exist"]),
    ("predict-glob-matches-nothing", ["predict", MODEL, "nowhere/*.jpg"], ["matches no file"]),
    ("predict-folder-without-images", ["predict", MODEL, "{emptydir}"], ["holds no images"]),
    ("predict-model-is-a-folder", ["predict", DIR, IMG], ["is a folder"]),
    (
        "predict-missing-checkpoint",
        ["predict", "yolox-nano", IMG, "--weights", "missing.pth"],
        ["missing.pth does not exist"],
    ),
    ("run-missing-source", ["run", MODEL, "--source", "missing.mp4"], ["missing.mp4 does not exist"]),
    ("run-glob-matches-nothing", ["run", MODEL, "--source", "nowhere/*.png"], ["matches no file"]),
    ("convert-missing-model", ["convert", "missing.onnx", "--to", "onnx"], ["does not exist"]),
    ("convert-checkpoint-is-a-folder", ["convert", "yolox-nano", "--to", "onnx", "--weights", DIR], ["is a folder"]),
    ("optimize-missing-model", ["optimize", "missing.onnx"], ["does not exist"]),
    ("quantize-missing-model", ["quantize", "missing.onnx", "--precision", "fp16"], ["does not exist"]),
    (
        "quantize-missing-calib",
        ["quantize", MODEL, "--calib", "missing/"],
        ["calibration images missing/ does not exist"],
    ),
    (
        "quantize-missing-holdout",
        ["quantize", MODEL, "--calib", DIR, "--holdout", "gone.mp4"],
        ["gone.mp4 does not exist"],
    ),
    ("bench-missing-data", ["bench", MODEL, "--data", "missing/"], ["missing/ does not exist"]),
    ("bench-calib-matches-nothing", ["bench", MODEL, "--calib", "none/*.jpg"], ["matches no file"]),
    ("bench-missing-annotations", ["bench", MODEL, "--annotations", "missing.json"], ["missing.json does not exist"]),
    ("bench-annotations-is-a-folder", ["bench", MODEL, "--annotations", DIR], ["is a folder"]),
    ("inspect-missing-model", ["inspect", "missing.onnx"], ["does not exist"]),
    # -- names that do not exist: zoo models, samples, backends, targets, precisions, variants
    ("zoo-pull-unknown", ["zoo", "pull", "movenet-lighting"], ["did you mean movenet-lightning"]),
    ("zoo-pull-unknown-second", ["zoo", "pull", "nanodet-m", "nope"], ["unknown model 'nope'"]),
    ("zoo-info-unknown", ["zoo", "info", "nope"], ["unknown model 'nope'"]),
    ("samples-path-unknown", ["samples", "path", "nope.avi"], ["nope.avi"]),
    ("predict-unknown-model", ["predict", "nanodet", IMG], ["unknown model 'nanodet'"]),
    ("predict-unknown-backend", ["predict", MODEL, IMG, "--no-save", "-b", "tensorrt"], ["unknown backend 'tensorrt'"]),
    ("convert-unknown-target", ["convert", MODEL, "--to", "coreml"], ["unknown target 'coreml'"]),
    ("quantize-unknown-backend", ["quantize", MODEL, "--backend", "tensorrt"], ["tensorrt"]),
    ("quantize-unknown-precision", ["quantize", MODEL, "--precision", "int4"], ["unknown precision 'int4'"]),
    ("bench-unknown-variant", ["bench", MODEL, "--variants", "ort-int3"], ["unknown variant(s) ort-int3"]),
    ("inspect-unknown-model", ["inspect", "nope-model"], ["unknown model 'nope-model'"]),
    # -- a folder where a file is written
    (
        "predict-video-into-folder",
        ["predict", MODEL, VID, "-o", "{dir.mp4}"],
        ["is a folder", "annotated video is a file"],
    ),
    ("predict-json-into-folder", ["predict", MODEL, IMG, "--no-save", "--json", "{dir.jsonl}"], ["is a folder"]),
    ("run-stats-into-folder", ["run", MODEL, "--source", VID, "--stats", "{dir.json}"], ["is a folder"]),
    ("run-events-into-folder", ["run", MODEL, "--source", VID, "--events", "{dir.jsonl}"], ["is a folder"]),
    ("convert-into-folder", ["convert", MODEL, "--to", "onnx", "-o", "{dir.onnx}"], ["is a folder"]),
    (
        "convert-ir-weights-into-folder",
        ["convert", MODEL, "--to", "openvino", "-o", "{blocked.xml}"],
        ["blocked.bin is a folder"],
    ),
    ("optimize-into-folder", ["optimize", MODEL, "-o", "{dir.onnx}"], ["is a folder"]),
    ("quantize-into-folder", ["quantize", MODEL, "--precision", "fp16", "-o", "{dir.onnx}"], ["is a folder"]),
    ("inspect-graph-into-folder", ["inspect", MODEL, "--graph", "{dir.html}"], ["is a folder"]),
    # -- a file where a folder is written, or in the way of one
    ("predict-images-into-file", ["predict", MODEL, DIR, "-o", "{afile}"], ["is a file", "folder"]),
    ("predict-under-a-file", ["predict", MODEL, VID, "-o", "{afile}/sub/out.mp4"], ["afile is a file"]),
    ("run-images-into-file", ["run", MODEL, "--source", DIR, "--out", "{afile}"], ["is a file"]),
    ("run-snapshots-into-file", ["run", MODEL, "--source", VID, "--events", "{ev.jsonl}"], ["ev-snapshots is a file"]),
    ("bench-report-into-file", ["bench", MODEL, "-o", "{afile}"], ["is a file", "report folder"]),
    ("demo-into-file", ["demo", "-o", "{afile}"], ["is a file"]),
    # -- places nobody can write: pseudo file systems, devices
    ("predict-video-into-proc", ["predict", MODEL, VID, "-o", "/proc/edgevision-out.mp4"], ["cannot write in /proc"]),
    (
        "predict-json-into-proc",
        ["predict", MODEL, IMG, "--no-save", "--json", "/proc/x.jsonl"],
        ["cannot write in /proc"],
    ),
    ("predict-json-onto-device", ["predict", MODEL, IMG, "--no-save", "--json", "/dev/null.jsonl"], ["in /dev"]),
    ("run-stats-into-sys", ["run", MODEL, "--source", VID, "--stats", "/sys/stats.json"], ["cannot write in /sys"]),
    ("convert-into-proc", ["convert", MODEL, "--to", "onnx", "-o", "/proc/x.onnx"], ["cannot write in /proc"]),
    ("optimize-into-proc", ["optimize", MODEL, "-o", "/proc/x.onnx"], ["cannot write in /proc"]),
    (
        "quantize-into-proc",
        ["quantize", MODEL, "--precision", "fp16", "-o", "/proc/q/model.onnx"],
        ["cannot write in /proc"],
    ),
    ("bench-into-proc", ["bench", MODEL, "-o", "/proc/bench"], ["cannot write in /proc"]),
    ("inspect-graph-into-proc", ["inspect", MODEL, "--graph", "/proc/g.svg"], ["cannot write in /proc"]),
    ("demo-into-proc", ["demo", "-o", "/proc/demo"], ["cannot write in /proc"]),
    # -- file types the chosen writer cannot make
    ("predict-video-as-mkv", ["predict", MODEL, VID, "-o", "out.mkv"], ["must end in .mp4 or .avi", "out.mkv"]),
    ("predict-video-as-txt", ["predict", MODEL, VID, "-o", "out.txt"], ["must end in .mp4 or .avi"]),
    ("predict-video-as-folder", ["predict", MODEL, VID, "-o", "annotated"], ["must end in .mp4 or .avi"]),
    ("predict-images-as-video", ["predict", MODEL, DIR, "-o", "out.mp4"], ["go into a folder"]),
    ("predict-image-as-image", ["predict", MODEL, IMG, "-o", "out.jpg"], ["go into a folder"]),
    ("predict-json-as-txt", ["predict", MODEL, IMG, "--no-save", "--json", "out.txt"], ["must end in .jsonl"]),
    ("run-video-as-mkv", ["run", MODEL, "--source", VID, "--out", "out.mkv"], ["must end in .mp4 or .avi"]),
    ("run-out-as-image", ["run", MODEL, "--source", VID, "--out", "out.png"], ["go into a folder"]),
    ("run-stats-as-txt", ["run", MODEL, "--source", VID, "--stats", "stats.txt"], ["must end in .json"]),
    ("run-events-as-csv", ["run", MODEL, "--source", VID, "--events", "events.csv"], ["must end in .jsonl"]),
    ("convert-openvino-as-onnx", ["convert", MODEL, "--to", "openvino", "-o", "x.onnx"], ["must end in .xml"]),
    ("convert-tflite-as-onnx", ["convert", MODEL, "--to", "tflite", "-o", "x.onnx"], ["must end in .tflite"]),
    ("optimize-as-xml", ["optimize", MODEL, "-o", "x.xml"], ["must end in .onnx"]),
    ("quantize-ort-as-xml", ["quantize", MODEL, "--precision", "fp16", "-o", "x.xml"], ["writes .onnx files"]),
    (
        "quantize-openvino-as-onnx",
        ["quantize", MODEL, "-b", "openvino", "--precision", "fp16", "-o", "x.onnx"],
        [".xml"],
    ),
    ("inspect-graph-as-txt", ["inspect", MODEL, "--graph", "g.txt"], ["--graph must end in .html, .htm or .svg"]),
    ("inspect-graph-as-png", ["inspect", MODEL, "--graph", "g.png"], ["must end in .html"]),
    # -- model files that are broken, of another type, or missing a part
    ("predict-truncated-onnx", ["predict", "{trunc.onnx}", IMG, "--no-save"], ["not a valid ONNX file", "truncated"]),
    ("predict-random-onnx", ["predict", "{random.onnx}", IMG, "--no-save"], ["not a valid ONNX file"]),
    ("predict-empty-onnx", ["predict", "{empty.onnx}", IMG, "--no-save"], ["is empty"]),
    ("optimize-truncated-onnx", ["optimize", "{trunc.onnx}"], ["not a valid ONNX file"]),
    ("inspect-truncated-onnx", ["inspect", "{trunc.onnx}"], ["not a valid ONNX file"]),
    ("quantize-truncated-onnx", ["quantize", "{trunc.onnx}", "--precision", "fp16"], ["not a valid ONNX file"]),
    ("convert-truncated-onnx", ["convert", "{trunc.onnx}", "--to", "openvino"], ["not a valid ONNX file"]),
    ("bench-truncated-onnx", ["bench", "{trunc.onnx}"], ["not a valid ONNX file"]),
    ("inspect-xml-without-bin", ["inspect", "{lonely.xml}"], ["needs its weights file", "lonely.bin"]),
    ("predict-xml-without-bin", ["predict", "{lonely.xml}", IMG, "--no-save"], ["lonely.bin"]),
    ("predict-xml-bad-weights", ["predict", "{badweights.xml}", IMG, "--no-save"], ["badweights.xml"]),
    ("predict-xml-not-xml", ["predict", "{notxml.xml}", IMG, "--no-save"], ["not a valid OpenVINO IR file"]),
    ("inspect-random-tflite", ["inspect", "{random.tflite}"], ["not a valid TFLite file"]),
    ("predict-random-tflite", ["predict", "{random.tflite}", IMG, "--no-save"], ["not a valid TFLite file"]),
    ("predict-random-pt2", ["predict", "{random.pt2}", IMG, "--no-save"], ["not a valid PyTorch export file"]),
    (
        "predict-unknown-model-type",
        ["predict", "{weights.bin}", IMG, "--no-save"],
        ["not a model file edgevision reads"],
    ),
    ("predict-text-as-image", ["predict", MODEL, "{notes.jpg}", "--no-save"], ["is not an image"]),
    (
        "bench-annotations-not-json",
        ["bench", MODEL, "--annotations", "{annotations.json}", "--data", DIR],
        ["annotations"],
    ),
    # -- option values that cannot work, or options that have no effect on this model
    (
        "convert-opset-999",
        ["convert", "yolox-nano", "--random-weights", "--to", "onnx", "--opset", "999"],
        ["opsets 7 to 20"],
    ),
    ("convert-opset-3", ["convert", MODEL, "--to", "onnx", "--opset", "3"], ["not 3"]),
    (
        "predict-weights-on-shipped-model",
        ["predict", "nanodet-m", IMG, "--weights", "{ckpt.pth}"],
        ["ships its own weights"],
    ),
    (
        "convert-random-weights-on-file",
        ["convert", MODEL, "--to", "onnx", "--random-weights"],
        ["for PyTorch zoo models"],
    ),
    ("run-zone-without-points", ["run", MODEL, "--source", VID, "--zone", "door"], ["must look like NAME:x1,y1"]),
    ("run-zone-not-finite", ["run", MODEL, "--source", VID, "--zone", "door:nan,0,1,1,0,1"], ["finite"]),
    ("run-zone-without-area", ["run", MODEL, "--source", VID, "--zone", "door:0,0,5,5,9,9"], ["no area"]),
    ("run-line-one-point", ["run", MODEL, "--source", VID, "--line", "gate:1,1,1,1"], ["same point"]),
    (
        "run-line-bad-direction",
        ["run", MODEL, "--source", VID, "--line", "gate:0,0,1,1:up"],
        ["direction must be one of"],
    ),
    ("bench-threads-zero", ["bench", MODEL, "--threads", "0"], ["must be 1 or more"]),
    ("bench-threads-huge", ["bench", MODEL, "--threads", "2000"], ["at most 1024"]),
    ("bench-threads-words", ["bench", MODEL, "--threads", "one,two"], ["whole numbers"]),
    ("predict-threads-huge", ["predict", MODEL, IMG, "--no-save", "--threads", "5000"], ["threads must be 1 to 1024"]),
    ("quantize-int8-without-calib", ["quantize", MODEL, "--precision", "int8"], ["int8 needs calibration images"]),
    ("quantize-unknown-method", ["quantize", MODEL, "--calib", DIR, "--method", "bogus"], ["bogus"]),
]


def _argv(template: list[str], inputs: dict[str, Path]) -> list[str]:
    return [re.sub(r"\{([\w.-]+)\}", lambda m: str(inputs[m.group(1)]), arg) for arg in template]


@pytest.mark.parametrize(("args", "needles"), [pytest.param(a, n, id=i) for i, a, n in CASES])
def test_bad_input_is_one_sentence_and_leaves_nothing(args, needles, inputs, empty_cache, tmp_path):
    watched = [tmp_path, inputs["inputs"], empty_cache]
    before = [tree(folder) for folder in watched]
    done = run_cli(*_argv(args, inputs), cwd=tmp_path, env={"EDGEVISION_CACHE": str(empty_cache)})
    assert_clean_error(done, *needles)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert [tree(folder) for folder in watched] == before, "files were left behind or removed"


def test_the_table_covers_every_command():
    commands = {args[0] if args[0] not in ("zoo", "samples") else " ".join(args[:2]) for _, args, _ in CASES}
    assert {
        "predict",
        "run",
        "convert",
        "optimize",
        "quantize",
        "bench",
        "inspect",
        "zoo pull",
        "zoo info",
        "samples path",
        "demo",
    } <= commands
    assert len(CASES) >= 60


# ----------------------------------------------------------------------------- slower rows: a model is loaded


@pytest.mark.slow
def test_checkpoint_that_is_not_one_is_named_whole(inputs, tmp_path):
    done = run_cli("predict", "yolox-nano", inputs["img"], "--no-save", "--weights", inputs["onnx"], cwd=tmp_path)
    assert_clean_error(done, "is not a PyTorch checkpoint")
    assert "`torch.)" not in done.stderr  # the library's reason is never cut mid-word
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_unknown_class_names_the_known_ones(inputs, tmp_path):
    done = run_cli("run", "nanodet-m", "--source", inputs["video"], "--classes", "unicorn", cwd=tmp_path)
    assert_clean_error(done, "'unicorn'", "person, bicycle, car")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- the same checks from Python


def test_api_checks_outputs_before_loading(inputs, tmp_path):
    import edgevision as ev

    with pytest.raises(EdgevisionError, match="must end in .mp4 or .avi"):
        ev.api.check_predict_outputs(inputs["video"], annotated=tmp_path / "out.mkv")
    with pytest.raises(EdgevisionError, match="is a folder"):
        ev.convert(inputs["onnx"], to="onnx", output=inputs["dir.onnx"])
    with pytest.raises(EdgevisionError, match="cannot write in /proc"):
        ev.run(inputs["onnx"], inputs["video"], outputs=ev.RunOutputs(stats="/proc/s.json"))
    with pytest.raises(EdgevisionError, match="must end in .html"):
        ev.api.write_graph(inputs["onnx"], tmp_path / "g.txt")
    assert list(tmp_path.iterdir()) == []


def test_load_failure_blames_the_file_only_when_it_is_broken(inputs, tmp_path):
    """A runtime refusing a sound file says so; it does not call the file corrupt."""
    from edgevision.modelfiles import load_failure

    sound = load_failure(inputs["onnx"], "ONNX Runtime", RuntimeError("Could not find an implementation\nfor Foo"))
    assert "corrupt" not in str(sound) and "Could not find an implementation for Foo" in str(sound)
    broken = load_failure(inputs["trunc.onnx"], "ONNX Runtime", RuntimeError("INVALID_PROTOBUF"))
    assert "not a valid ONNX file" in str(broken)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino", "litert", "torch"])
@pytest.mark.parametrize("garbage", [b"", b"\x00" * 64, b"garbage " * 200])
def test_garbage_on_every_backend_is_one_sentence(backend, garbage, tmp_path):
    from edgevision.backends import create_backend, get_backend_class

    cls = get_backend_class(backend)
    path = tmp_path / f"model{cls.suffixes[0]}"
    path.write_bytes(garbage)
    if path.suffix == ".xml":
        path.with_suffix(".bin").write_bytes(garbage)
    with pytest.raises(EdgevisionError) as error:
        create_backend(backend, path)
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_threads_above_the_cores_warn_once(inputs, caplog):
    import edgevision as ev
    from edgevision.checks import usable_cores

    with caplog.at_level(logging.WARNING):
        ev.load(inputs["onnx"], threads=usable_cores() + 1)
    warnings = [r for r in caplog.records if "core(s) are usable" in r.getMessage()]
    assert len(warnings) == 1


def test_threads_within_the_cores_do_not_warn(inputs, caplog):
    import edgevision as ev

    with caplog.at_level(logging.WARNING):
        ev.load(inputs["onnx"], threads=1)
    assert not [r for r in caplog.records if "usable" in r.getMessage()]


def test_second_input_fed_zeros_warns_once(tmp_path, caplog):
    import edgevision as ev

    write_conv_onnx(tmp_path / "two.onnx", inputs=2)
    with caplog.at_level(logging.WARNING):
        model = ev.load(tmp_path / "two.onnx")
        for _ in range(3):
            model.predict(np.zeros((20, 30, 3), np.uint8))
    warnings = [r.getMessage() for r in caplog.records if "get zeros" in r.getMessage()]
    assert len(warnings) == 1 and "extra1" in warnings[0]


def test_unknown_class_is_refused_and_known_ones_take_the_model_spelling():
    from edgevision.models.base import Predictor
    from edgevision.pipeline.run import model_classes

    class Labelled(Predictor):
        task = "detection"

        def __init__(self, names):
            self.processor = type("P", (), {"class_names": names})()

        def __call__(self, image):
            raise AssertionError("not run")

    ssd = Labelled(("???", "Person", "Car"))
    assert model_classes(ssd, ("person", "CAR")) == ("Person", "Car")
    with pytest.raises(EdgevisionError, match="'unicorn'.*Person, Car"):
        model_classes(ssd, ("unicorn",))
    assert model_classes(Labelled(()), ("unicorn",)) == ("unicorn",)  # classes unknown: left alone
    assert model_classes(ssd, None) is None


@pytest.mark.parametrize("size", [(10, 10000), (10000, 10), (1, 1), (1, 3000), (33, 2)])
def test_thin_images_fit_multipose_input(size):
    from edgevision.models.movenet import MoveNetProcessor

    processor = MoveNetProcessor((256, 256), multiple_of=32)
    tensor, _ = processor.preprocess(np.zeros((*size, 3), np.uint8))
    assert tensor.shape[1] >= 32 and tensor.shape[2] >= 32
    assert tensor.shape[1] % 32 == 0 and tensor.shape[2] % 32 == 0


@pytest.mark.slow
@pytest.mark.parametrize("size", [(10, 10000), (10000, 10), (1, 1)])
def test_thin_images_run_on_multipose(size):
    from edgevision.zoo.assemble import load_predictor

    poses = load_predictor("movenet-multipose")(np.full((*size, 3), 128, np.uint8))
    assert len(poses) == 0 or np.isfinite(poses.keypoints).all()


def test_unwritable_place_is_found_without_creating_anything(tmp_path):
    from edgevision.checks import output_file, output_folder, writable_place

    target = tmp_path / "a" / "b" / "out.mp4"
    output_file(target, suffixes=(".mp4",), what="video")
    output_folder(tmp_path / "new" / "folder", what="report")
    writable_place(tmp_path)
    assert list(tmp_path.iterdir()) == []
