"""The talk's PyTorch models from the command line: official-layout weights, random weights,
and the errors a user meets when the weights are missing or wrong."""

from __future__ import annotations

import json

import cv2
import pytest

from conftest import run_cli

torch = pytest.importorskip("torch")


def _save_yolox_checkpoint(path, *, drop: str | None = None, reshape: str | None = None):
    from edgevision.models.yolox import build_yolox

    state = build_yolox("yolox-nano").state_dict()
    if drop:
        state.pop(drop)
    if reshape:
        state[reshape] = torch.zeros(3, 3)
    torch.save({"start_epoch": 300, "model": state}, path)
    return path


def test_missing_weights_say_where_to_get_them(samples_cache):
    done = run_cli("predict", "yolox-nano", samples_cache["dog.jpg"], "--no-save")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "yolox_nano.pth" in done.stderr and "--weights" in done.stderr and "--random-weights" in done.stderr


def test_misshaped_checkpoint_key_is_named(tmp_path, samples_cache):
    key = "head.cls_preds.0.weight"
    ckpt = _save_yolox_checkpoint(tmp_path / "bad.pth", reshape=key)
    done = run_cli("predict", "yolox-nano", samples_cache["dog.jpg"], "--weights", ckpt, "--no-save")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert key in done.stderr


def test_missing_checkpoint_key_is_named(tmp_path, samples_cache):
    key = "backbone.backbone.stem.conv.conv.weight"
    ckpt = _save_yolox_checkpoint(tmp_path / "bad.pth", drop=key)
    done = run_cli("predict", "yolox-nano", samples_cache["dog.jpg"], "--weights", ckpt, "--no-save")
    assert done.returncode == 2 and key in done.stderr


def test_official_layout_weights_run_end_to_end(tmp_path, samples_cache):
    ckpt = _save_yolox_checkpoint(tmp_path / "yolox_nano.pth")
    done = run_cli("predict", "yolox-nano", samples_cache["dog.jpg"], "--weights", ckpt, "--json", "-", "--no-save")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout.splitlines()[-1])
    assert record["task"] == "detection" and "random_weights" not in record


def test_random_weights_are_labelled_everywhere(tmp_path, samples_cache):
    out = tmp_path / "annotated"
    done = run_cli("predict", "yolox-nano", samples_cache["dog.jpg"], "--random-weights", "-o", out, "--json", "-")
    assert done.returncode == 0, done.stderr
    assert "random weights" in done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["random_weights"] is True
    banner = cv2.imread(str(out / "dog.jpg"))[:8, :, :]
    assert banner[..., 2].mean() > 150 and banner[..., 0].mean() < 60  # the red warning band


@pytest.mark.slow
def test_openpose_with_port_checkpoint_predicts(tmp_path, samples_cache):
    from edgevision.models.openpose import build_openpose

    state = {k.split(".", 1)[1]: v for k, v in build_openpose().state_dict().items()}  # the port's flat keys
    ckpt = tmp_path / "body_pose_model.pth"
    torch.save(state, ckpt)
    out = tmp_path / "annotated"
    done = run_cli("predict", "openpose-body", samples_cache["person.jpg"], "--weights", ckpt, "-o", out, "--json", "-")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout.splitlines()[-1])
    assert record["task"] == "pose" and "random_weights" not in record
    assert (out / "person.jpg").exists()


# OpenPose's export parity is checked at module level in test_openpose.py
# (test_onnx_export_parity_reduced_input); through the CLI it took 45 s of the suite for nothing more.
@pytest.mark.parametrize("name", ["yolox-nano"])
def test_convert_reports_pytorch_parity(name, tmp_path, samples_cache):
    import re

    out = tmp_path / f"{name}.onnx"
    cache = tmp_path / "cache"  # an empty model cache: the export and its parity check really run
    cache.mkdir()
    (cache / "samples").symlink_to(samples_cache["person.jpg"].parent)
    done = run_cli(
        "convert",
        name,
        "--random-weights",
        "--to",
        "onnx",
        "-o",
        out,
        "--opset",
        "17",
        env={"EDGEVISION_CACHE": str(cache)},
    )
    assert done.returncode == 0, done.stderr
    assert "PyTorch -> ONNX parity passed (tolerance 1e-04)" in done.stdout
    diffs = [
        float(d)
        for d in re.findall(r"max\|diff\| ([0-9.e+-]+)", done.stdout.split("parity passed (tolerance 1e-03")[0])
    ]
    meta = json.loads(out.with_name(out.name + ".edgevision.json").read_text())
    assert meta["random_weights"] is True and meta["parity"]["pytorch_to_onnx"]["passed"] is True
    outputs = meta["parity"]["pytorch_to_onnx"]["outputs"]
    assert [o["max_abs_diff"] for o in outputs] == pytest.approx(diffs, rel=1e-3) and len(diffs) == 2
    assert all(o["max_abs_diff"] <= 1e-4 * max(1.0, o["scale"]) for o in outputs), outputs  # the stated tolerance
    assert "random weights" in done.stderr
