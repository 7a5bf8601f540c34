"""`predict` and `bench --data` over several sources; raw models' values; `run` refuses raw models."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from typer.testing import CliRunner

from conftest import assert_clean_error, frame_count, run_cli
from edgevision.errors import EdgevisionError
from edgevision.models.raw import raw_processor
from edgevision.types import TensorSpec

RAW_BAND_BGR = (0, 0, 200)  # the colour of annotate.draw_banner


def jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture()
def photos(samples_cache, tmp_path):
    """day/a.jpg (the dog) and night/a.jpg (the horses): one file name in two folders; a folder
    of two more photos; a folder of PNGs for a glob."""
    for folder, source in (("day", "dog.jpg"), ("night", "horses.jpg")):
        (tmp_path / folder).mkdir()
        shutil.copy(samples_cache[source], tmp_path / folder / "a.jpg")
    (tmp_path / "frames").mkdir()
    for name in ("person.jpg", "messi5.jpg"):
        shutil.copy(samples_cache[name], tmp_path / "frames" / name)
    (tmp_path / "shots").mkdir()
    cv2.imwrite(str(tmp_path / "shots" / "b.png"), cv2.imread(str(samples_cache["dog.jpg"]))[:200, :300])
    cv2.imwrite(str(tmp_path / "shots" / "c.png"), cv2.imread(str(samples_cache["horses.jpg"]))[:240, :320])
    return tmp_path


@pytest.fixture(scope="module")
def echo_onnx(tmp_path_factory):
    """A raw model with a big output (the 32x32x3 input itself: 3072 values) and a small one (its mean)."""
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 32, 32, 3])
    echo = helper.make_tensor_value_info("echo", TensorProto.FLOAT, [1, 32, 32, 3])
    mean = helper.make_tensor_value_info("mean", TensorProto.FLOAT, [1, 1, 1, 1])
    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["images"], ["echo"]),
            helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=1),
        ],
        "echo",
        [images],
        [echo, mean],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path_factory.mktemp("echo") / "echo.onnx"
    onnx.save(model, str(path))
    return path


def runtime_outputs(model_path, image: np.ndarray) -> dict[str, np.ndarray]:
    """The model's outputs for ``image``, from an ONNX Runtime session of our own."""
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    spec = session.get_inputs()[0]
    processor = raw_processor(TensorSpec(spec.name, tuple(spec.shape), "float32"))
    feed = processor.preprocess(image)[0]
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {spec.name: feed})))


def first_frame_count(path, count: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = [cap.read()[1] for _ in range(count)]
    cap.release()
    return frames


# ----------------------------------------------------------------------------- several sources


def test_predict_files_folder_glob_and_video_in_one_call(photos, short_video, tmp_path):
    out, lines = tmp_path / "out", tmp_path / "all.jsonl"
    sources = [photos / "day" / "a.jpg", photos / "night" / "a.jpg", photos / "frames", f"{photos}/shots/*.png"]
    done = run_cli(
        "predict", "nanodet-m", *sources, short_video, "--every", "2", "--max-frames", "3", "-o", out, "--json", lines
    )
    assert done.returncode == 0, done.stderr
    records = jsonl(lines)
    assert [r["name"] for r in records] == [
        "day/a.jpg",
        "night/a.jpg",
        "messi5.jpg",
        "person.jpg",
        "b.png",
        "c.png",
        "vtest12.avi",
        "vtest12.avi",
        "vtest12.avi",
    ]
    assert [r["frame"] for r in records[-3:]] == [0, 2, 4]  # every 2nd frame, at most 3
    assert {o["label"] for o in records[0]["objects"]} >= {"dog"}
    assert {o["label"] for o in records[1]["objects"]} >= {"horse"}
    for name in ("day/a.jpg", "night/a.jpg", "messi5.jpg", "person.jpg", "b.png", "c.png"):
        assert cv2.imread(str(out / name)) is not None, name
    assert frame_count(out / "vtest12.avi") == 3
    assert "9 frame(s) from 5 sources (7 files)" in " ".join(done.stderr.split())


def test_one_file_name_in_two_folders_gives_two_outputs(photos, samples_cache, tmp_path):
    out = tmp_path / "out"
    done = run_cli("predict", "nanodet-m", photos / "day", photos / "night", "-o", out, "--json", "-")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["name"] for r in records] == ["day/a.jpg", "night/a.jpg"]
    day, night = cv2.imread(str(out / "day" / "a.jpg")), cv2.imread(str(out / "night" / "a.jpg"))
    assert day.shape == cv2.imread(str(samples_cache["dog.jpg"])).shape
    assert night.shape == cv2.imread(str(samples_cache["horses.jpg"])).shape
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg")) == ["day/a.jpg", "night/a.jpg"]


def test_a_file_named_twice_is_read_once(photos, tmp_path):
    lines = tmp_path / "out.jsonl"
    a = photos / "day" / "a.jpg"
    done = run_cli(
        "predict",
        "nanodet-m",
        a,
        photos / "day",
        f"{photos}/day/*.jpg",
        f"{photos}/day/../day/a.jpg",
        "--no-save",
        "--json",
        lines,
    )
    assert done.returncode == 0, done.stderr
    assert [r["source"] for r in jsonl(lines)] == [str(a)]


def test_names_are_the_shortest_path_ends_that_differ(tmp_path):
    from edgevision.media import expand_sources

    for folder in ("x/day", "y/day", "night"):
        (tmp_path / folder).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / folder / "a.png"), np.zeros((4, 4, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "night" / "b.png"), np.zeros((4, 4, 3), np.uint8))
    files = expand_sources([str(tmp_path / "x/day"), str(tmp_path / "y/day/a.png"), f"{tmp_path}/night/*.png"])
    assert [f.name for f in files] == ["x/day/a.png", "y/day/a.png", "night/a.png", "b.png"]
    assert [f.path for f in files][1] == tmp_path / "y/day/a.png"


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ("missing.jpg", "missing.jpg does not exist"),
        ("missing.mp4", "missing.mp4 does not exist"),
        ("empty", "holds no images"),
        ("nowhere/*.png", "matches no file"),
    ],
)
def test_a_bad_source_among_good_ones_is_refused_before_loading(bad, needle, photos, monkeypatch):
    import edgevision.cli.console as command  # predict loads through console.load_model
    from edgevision.cli import app

    (photos / "empty").mkdir()
    monkeypatch.chdir(photos)
    monkeypatch.setattr(command, "load", lambda *a, **k: pytest.fail("the model was loaded"))
    result = CliRunner().invoke(app, ["predict", "nanodet-m", "day/a.jpg", "frames", bad, "--no-save"])
    assert isinstance(result.exception, EdgevisionError), result.output
    assert needle in str(result.exception)


def test_a_missing_source_is_one_sentence(photos):
    done = run_cli("predict", "nanodet-m", photos / "day" / "a.jpg", photos / "gone.jpg", "--no-save")
    assert_clean_error(done, "gone.jpg does not exist")


def test_several_sources_go_into_a_folder_not_a_video(photos, short_video, tmp_path):
    done = run_cli("predict", "nanodet-m", photos / "day" / "a.jpg", short_video, "-o", tmp_path / "out.mp4")
    assert_clean_error(done, "go into a folder")
    assert not (tmp_path / "out.mp4").exists()


# ----------------------------------------------------------------------------- raw models


def test_raw_json_holds_the_runtime_values(tiny_model_files, samples_cache, short_video):
    model = tiny_model_files["onnxruntime"]
    done = run_cli(
        "predict", model, samples_cache["dog.jpg"], short_video, "--max-frames", "2", "--no-save", "--json", "-"
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    images = [cv2.imread(str(samples_cache["dog.jpg"])), *first_frame_count(short_video, 2)]
    assert len(records) == len(images) == 3
    for record, image in zip(records, images):
        expected = runtime_outputs(model, image)
        assert record["task"] == "raw" and [o["output"] for o in record["outputs"]] == ["logits", "features"]
        for output in record["outputs"]:
            values = np.array(output["values"], dtype=np.float32)
            assert values.shape == expected[output["output"]].shape
            assert np.array_equal(values, expected[output["output"]]), output["output"]


def test_a_big_raw_output_gives_its_first_values_and_a_note(echo_onnx, samples_cache):
    done = run_cli("predict", echo_onnx, samples_cache["dog.jpg"], "--no-save", "--json", "-")
    assert done.returncode == 0, done.stderr
    outputs = {o["output"]: o for o in json.loads(done.stdout)["outputs"]}
    expected = runtime_outputs(echo_onnx, cv2.imread(str(samples_cache["dog.jpg"])))
    echo = outputs["echo"]
    assert "values" not in echo and "--raw-out" in echo["note"] and "3072" in echo["note"]
    assert np.array_equal(np.float32(echo["first_values"]), expected["echo"].reshape(-1)[:20])
    assert echo["shape"] == [1, 32, 32, 3]
    assert np.array_equal(np.float32(outputs["mean"]["values"]), expected["mean"])


def test_raw_out_round_trips_every_output_exactly(echo_onnx, photos, short_video, tmp_path):
    raw = tmp_path / "raw" / "outputs.npz"
    sources = [photos / "day", photos / "night", short_video]
    done = run_cli("predict", echo_onnx, *sources, "--max-frames", "2", "--no-save", "--raw-out", raw)
    assert done.returncode == 0, done.stderr
    images = {
        "day/a.jpg": cv2.imread(str(photos / "day" / "a.jpg")),
        "night/a.jpg": cv2.imread(str(photos / "night" / "a.jpg")),
    }
    images.update({f"vtest12.avi/{i}": frame for i, frame in enumerate(first_frame_count(short_video, 2))})
    with np.load(raw) as archive:
        assert sorted(archive.files) == sorted(f"{key}/{name}" for key in images for name in ("echo", "mean"))
        for key, image in images.items():
            for name, expected in runtime_outputs(echo_onnx, image).items():
                got = archive[f"{key}/{name}"]
                assert got.dtype == expected.dtype and np.array_equal(got, expected), f"{key}/{name}"
    assert [p.name for p in raw.parent.iterdir()] == ["outputs.npz"]  # no temporary file left


def test_raw_out_of_a_decoding_model_is_refused(samples_cache, tmp_path):
    raw = tmp_path / "raw.npz"
    done = run_cli("predict", "nanodet-m", samples_cache["dog.jpg"], "--no-save", "--raw-out", raw)
    assert_clean_error(done, "no decoder", "leave out --raw-out")
    assert not raw.exists() and list(tmp_path.iterdir()) == []


def test_raw_out_must_be_an_npz(tiny_model_files, samples_cache, tmp_path):
    done = run_cli(
        "predict", tiny_model_files["onnxruntime"], samples_cache["dog.jpg"], "--raw-out", tmp_path / "r.npy"
    )
    assert_clean_error(done, "must end in .npz")


def test_annotated_images_of_a_raw_model_are_marked(tiny_model_files, samples_cache, tmp_path):
    out = tmp_path / "out"
    done = run_cli("predict", tiny_model_files["onnxruntime"], samples_cache["dog.jpg"], "-o", out)
    assert done.returncode == 0, done.stderr
    original = cv2.imread(str(samples_cache["dog.jpg"])).astype(int)
    marked = cv2.imread(str(out / "dog.jpg")).astype(int)
    assert marked.shape == original.shape
    band = marked[:8, :4].reshape(-1, 3)
    assert np.abs(band - RAW_BAND_BGR).max() < 40, band[:3]
    assert np.abs(marked[100:] - original[100:]).mean() < 3  # only the band differs (JPEG noise aside)


# ----------------------------------------------------------------------------- run needs objects


def test_run_refuses_a_raw_model_before_starting(tiny_model_files, short_video, tmp_path):
    events = tmp_path / "events.jsonl"
    done = run_cli("run", tiny_model_files["onnxruntime"], "--source", short_video, "--events", events)
    assert_clean_error(done, "gives raw outputs, not boxes or poses", "model card")
    assert list(tmp_path.iterdir()) == []


def test_run_pipeline_refuses_a_raw_predictor(tiny_model_files, short_video):
    from edgevision.pipeline.run import run_pipeline
    from edgevision.zoo.assemble import load_predictor

    with pytest.raises(EdgevisionError, match="raw outputs"):
        run_pipeline(load_predictor(str(tiny_model_files["onnxruntime"])), str(short_video))


def test_run_writes_the_frames_of_a_video_into_an_image_folder(short_video, tmp_path):
    out = tmp_path / "frames"
    done = run_cli("run", "nanodet-m", "--source", short_video, "--max-frames", "3", "--out", out)
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["vtest12-000000.jpg", "vtest12-000001.jpg", "vtest12-000002.jpg"]
    assert cv2.imread(str(out / names[0])).shape == (576, 768, 3)


# ----------------------------------------------------------------------------- bench --data


def test_bench_data_takes_several_sources_each_file_once(photos, short_video):
    from edgevision.benchmark.data import load_data

    data = load_data((str(photos / "day"), f"{photos}/day/*.jpg", str(photos / "frames"), str(short_video)), 16)
    names = [n.replace(str(photos) + "/", "") for n in data.names]
    assert names[:3] == ["day/a.jpg", "frames/messi5.jpg", "frames/person.jpg"]
    assert names[3:] == [f"vtest12.avi#{i}" for i in range(12)]
    assert len(data.images) == 15 and data.images[0].shape == cv2.imread(str(photos / "day" / "a.jpg")).shape


def test_bench_data_spreads_the_count_over_every_source(photos, short_video):
    from edgevision.benchmark.data import load_data

    data = load_data([str(short_video), str(photos / "frames")], 4)  # 4 frames then 2 photos, 4 kept
    assert len(data.images) == 4
    assert any(n.endswith("person.jpg") or n.endswith("messi5.jpg") for n in data.names)
    assert any("vtest12.avi#" in n for n in data.names)


def test_bench_refuses_a_bad_data_source_before_any_work(tiny_model_files, photos, tmp_path):
    report = tmp_path / "report"
    done = run_cli(
        "bench",
        tiny_model_files["onnxruntime"],
        "--data",
        photos / "frames",
        "--data",
        photos / "empty",
        "--variants",
        "ort-fp32",
        "-o",
        report,
    )
    assert_clean_error(done, "--data images", "empty does not exist; check the path")
    assert not report.exists()


def test_bench_scores_several_data_sources(tiny_model_files, photos, short_video, tmp_path):
    report = tmp_path / "report"
    done = run_cli(
        "bench",
        tiny_model_files["onnxruntime"],
        "--data", photos / "day", "--data", f"{photos}/shots/*.png", "--data", short_video,
        "--count", "5", "--variants", "ort-fp32", "--threads", "1", "--rounds", "1", "--seconds", "0.05",
        "--no-peak", "-o", report, "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    settings = json.loads(done.stdout)["settings"]
    assert settings["data_images"] == 5
    assert settings["data"] == [str(photos / "day"), f"{photos}/shots/*.png", str(short_video)]
