"""A damaged cache is noticed: pulled models, samples, package archives and bench variants.

Every test works on a temporary cache (``EDGEVISION_CACHE``) holding copies of what it
damages; package archives it only reads are symlinked from the user cache, so pulls stay
offline and the user cache is never written.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

import edgevision
import tiny_models
from conftest import assert_clean_error, run_cli
from edgevision.errors import EdgevisionError
from edgevision.files import STAMPS, damaged_files, file_record, stamp_of
from edgevision.packages import Artifact, archive_problem, fetch_artifact, package_archive
from edgevision.samples import SAMPLES
from edgevision.zoo import get_spec, model_dir, pull

MODEL = "nanodet-m"
PHOTO = "person.jpg"
REPAIR = f"edgevision zoo pull --force {MODEL}"
AN_HOUR_AGO = time.time_ns() - 3600 * 10**9


def flip_middle(path: Path, size: int = 4096) -> None:
    """Invert ``size`` bytes in the middle of ``path`` in place (its size stays the same)."""
    length = min(size, path.stat().st_size // 2)
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size // 2)
        block = f.read(length)
        f.seek(-len(block), os.SEEK_CUR)
        f.write(bytes(b ^ 0xFF for b in block))


def keep_mtime(path: Path, change) -> None:
    """Run ``change(path)``, then give ``path`` back its modification time."""
    before = path.stat()
    change(path)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


@pytest.fixture(scope="module")
def user_cache(samples_cache) -> dict[str, Path]:
    """The pulled model, its package archive and the samples' archive, in the user cache (read only)."""
    spec = get_spec(MODEL)
    return {
        "model": pull(MODEL),
        "archive": package_archive(spec.artifacts[0]),
        "samples_archive": package_archive(SAMPLES[PHOTO]),
        "samples": samples_cache[PHOTO].parent,
    }


@pytest.fixture
def cache(user_cache, tmp_path, monkeypatch) -> Path:
    """A temporary cache: a copy of the pulled model and the samples, the archives symlinked."""
    root = tmp_path / "cache"
    shutil.copytree(user_cache["model"], root / "models" / MODEL)
    for path in (root / "models" / MODEL).iterdir():  # settled files, however recently the model was pulled
        os.utime(path, ns=(AN_HOUR_AGO, AN_HOUR_AGO))
    shutil.copytree(user_cache["samples"], root / "samples")
    for key in ("archive", "samples_archive"):
        archive = user_cache[key]
        link = root / "packages" / archive.parent.name / archive.name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(archive)
    monkeypatch.setenv("EDGEVISION_CACHE", str(root))
    return root


def cli(cache: Path, *args: str):
    return run_cli(*args, env={"EDGEVISION_CACHE": str(cache)})


def people(cache: Path, model: str = MODEL) -> list[dict]:
    done = cli(cache, "predict", model, cache / "samples" / PHOTO, "--no-save", "--json", "-")
    assert done.returncode == 0, done.stderr
    return [o for o in json.loads(done.stdout.strip().splitlines()[-1])["objects"] if o["label"] == "person"]


# ----------------------------------------------------------------------------- pulled models


def test_damaged_model_fails_predict_load_and_pull_with_one_sentence(cache, tmp_path):
    assert people(cache)  # intact: the person is found
    onnx = cache / "models" / MODEL / "model.onnx"
    flip_middle(onnx)
    out = tmp_path / "annotated"
    done = cli(cache, "predict", MODEL, cache / "samples" / PHOTO, "-o", out)
    assert_clean_error(done, f"{onnx} of {MODEL} does not match its recorded sha256", REPAIR)
    assert not out.exists()
    with pytest.raises(EdgevisionError, match="model.onnx of nanodet-m does not match") as error:
        edgevision.load(MODEL)
    assert REPAIR in str(error.value)
    assert_clean_error(cli(cache, "zoo", "pull", MODEL), "model.onnx", REPAIR)
    assert_clean_error(cli(cache, "predict", onnx, cache / "samples" / PHOTO, "--no-save"), "model.onnx", REPAIR)


def test_a_missing_model_file_is_named(cache):
    (cache / "models" / MODEL / "nanodet.bin").unlink()
    assert_clean_error(cli(cache, "zoo", "info", MODEL), "nanodet.bin of nanodet-m is missing", REPAIR)


def test_load_is_cheap_until_a_file_is_touched_and_pull_hashes_in_full(cache):
    onnx = cache / "models" / MODEL / "model.onnx"
    edgevision.load(MODEL)  # stamps every file
    keep_mtime(onnx, flip_middle)  # damage that keeps size and mtime: the stamp still holds
    edgevision.load(MODEL)  # the cheap check trusts the stamp (no hash on the fast path) ...
    with pytest.raises(EdgevisionError, match="model.onnx of nanodet-m does not match"):
        pull(MODEL)  # ... a pull hashes every file
    verify = cli(cache, "zoo", "verify", MODEL)
    assert verify.returncode == 1 and "model.onnx does not match" in verify.stdout


def test_a_touched_file_is_hashed_again_and_accepted(cache):
    folder = cache / "models" / MODEL
    onnx = folder / "model.onnx"
    edgevision.load(MODEL)
    stamped = json.loads((folder / STAMPS).read_text())["model.onnx"]
    later = time.time_ns() - 10 * 10**9
    assert later != stamped[1]
    os.utime(onnx, ns=(later, later))  # same bytes, another mtime
    assert edgevision.load(MODEL).predict(np.full((64, 64, 3), 127, np.uint8)) is not None
    restamped = json.loads((folder / STAMPS).read_text())["model.onnx"]
    assert restamped == stamp_of(onnx) == [stamped[0], later]


@pytest.mark.slow
def test_pull_force_repairs_a_damaged_model(cache):
    before = people(cache)
    flip_middle(cache / "models" / MODEL / "model.onnx")
    assert cli(cache, "predict", MODEL, cache / "samples" / PHOTO, "--no-save").returncode == 2
    done = cli(cache, "zoo", "pull", "--force", MODEL)
    assert done.returncode == 0, done.stderr
    after = people(cache)  # converted again: the same people, up to float noise
    assert len(after) == len(before)
    for old, new in zip(before, after):
        assert new["score"] == pytest.approx(old["score"], abs=1e-3)
        assert new["box"] == pytest.approx(old["box"], abs=0.5)
    assert cli(cache, "zoo", "verify", MODEL).returncode == 0
    assert cli(cache, "zoo", "pull", MODEL).stdout.strip().endswith("(cached, verified)")


def test_pull_of_a_pytorch_family_keeps_its_exports(cache):
    export = cache / "models" / "yolox-nano" / "random-seed0" / "model.onnx"
    export.parent.mkdir(parents=True)
    export.write_bytes(b"an export")
    assert_clean_error(cli(cache, "zoo", "pull", "yolox-nano"), "nothing to pull", "--weights")
    assert export.read_bytes() == b"an export" and not (model_dir("yolox-nano") / "manifest.json").exists()


# ----------------------------------------------------------------------------- zoo verify


def verify_lines(done) -> dict[str, str]:
    """``{name: line}`` of ``zoo verify``'s output."""
    return {line.split()[2]: line for line in done.stdout.splitlines() if line.strip()}


def test_verify_reports_each_item_and_exits_1_when_something_is_damaged(cache, user_cache):
    intact = cli(cache, "zoo", "verify")
    assert intact.returncode == 0, intact.stdout + intact.stderr
    lines = verify_lines(intact)
    archive = f"npm/{user_cache['archive'].name}"
    for name in (MODEL, PHOTO, "vtest.avi", archive):
        assert lines[name].startswith("ok "), lines
    assert "pinned files match" in lines[archive]

    flip_middle(cache / "models" / MODEL / "nanodet.bin")
    flip_middle(cache / "samples" / PHOTO)
    broken = cli(cache, "zoo", "verify")
    assert broken.returncode == 1
    lines = verify_lines(broken)
    assert lines[MODEL].startswith("broken") and "nanodet.bin does not match" in lines[MODEL]
    assert lines[MODEL].endswith(f"repair: {REPAIR}")
    assert lines[PHOTO].startswith("broken") and lines[PHOTO].endswith("repair: edgevision samples pull")
    assert lines["vtest.avi"].startswith("ok ") and "2 of" in broken.stderr

    record = json.loads(cli(cache, "zoo", "verify", "--json").stdout)
    assert record["ok"] is False and record["broken"] == 2
    assert {(i["kind"], i["name"]) for i in record["items"] if not i["ok"]} == {("model", MODEL), ("sample", PHOTO)}

    assert cli(cache, "samples", "pull").returncode == 0  # the printed repair works, offline
    record = json.loads(cli(cache, "zoo", "verify", "--json").stdout)
    assert [i["name"] for i in record["items"] if not i["ok"]] == [MODEL]
    only_model = json.loads(cli(cache, "zoo", "verify", MODEL, "--json").stdout)
    assert [i["name"] for i in only_model["items"]] == [MODEL, archive]  # the model and its package only


def test_verify_names_a_damaged_archive_and_a_pull_from_it_removes_it(cache, user_cache):
    link = cache / "packages" / "debian" / user_cache["samples_archive"].name
    link.unlink()
    shutil.copyfile(user_cache["samples_archive"], link)  # a copy of its own, to damage
    flip_middle(link)
    done = cli(cache, "zoo", "verify", "--json")
    assert done.returncode == 1
    item = next(i for i in json.loads(done.stdout)["items"] if i["kind"] == "package" and not i["ok"])
    assert item["path"] == str(link) and item["repair"].startswith(f"rm '{link}'")
    (cache / "samples" / PHOTO).unlink()
    assert_clean_error(cli(cache, "samples", "path", PHOTO), "is damaged", "it was removed")
    assert not link.exists()


def test_verify_of_an_unknown_or_pytorch_model_is_a_user_error(cache):
    assert_clean_error(cli(cache, "zoo", "verify", "nanodet"), "unknown model 'nanodet'")
    assert_clean_error(cli(cache, "zoo", "verify", "yolox-nano"), "built in PyTorch")


# ----------------------------------------------------------------------------- the cheap check itself

RECORDED = b"recorded bytes " * 100


def written(data: bytes, mtime_ns: int):
    """A change to a file: write ``data`` and set its mtime."""

    def change(path: Path) -> None:
        path.write_bytes(data)
        os.utime(path, ns=(mtime_ns, mtime_ns))

    return change


MISMATCH = "does not match its recorded sha256"


@pytest.mark.parametrize(
    ("change", "cheap", "full", "stamped"),
    [
        (None, None, None, True),
        (lambda p: p.unlink(), "is missing", "is missing", False),
        (
            written(RECORDED + b"!", AN_HOUR_AGO + 1),
            "has 1501 bytes instead of 1500",
            "has 1501 bytes instead of 1500",
            False,
        ),
        (written(RECORDED.upper(), AN_HOUR_AGO + 1), MISMATCH, MISMATCH, False),
        (
            written(RECORDED.upper(), AN_HOUR_AGO),
            None,
            MISMATCH,
            True,
        ),  # same size and mtime: only a full check sees it
        (written(RECORDED, AN_HOUR_AGO + 1), None, None, True),  # touched: hashed again, accepted, stamped afresh
        (
            lambda p: written(RECORDED, time.time_ns())(p),
            None,
            None,
            False,
        ),  # written just now: accepted, not stamped yet
    ],
    ids=["intact", "missing", "size", "bytes", "bytes-same-stamp", "touched", "fresh"],
)
def test_damaged_files(tmp_path, change, cheap, full, stamped):
    path = tmp_path / "model.bin"
    written(RECORDED, AN_HOUR_AGO)(path)
    records = {path.name: file_record(path)}
    assert damaged_files(tmp_path, records) == {}
    assert json.loads((tmp_path / STAMPS).read_text()) == {path.name: [1500, AN_HOUR_AGO]}
    if change:
        change(path)
    assert damaged_files(tmp_path, records).get(path.name) == cheap
    assert damaged_files(tmp_path, records, full=True).get(path.name) == full
    stamps = json.loads((tmp_path / STAMPS).read_text())
    assert (path.exists() and stamps[path.name] == stamp_of(path)) is stamped


def test_damaged_files_of_no_records_is_empty(tmp_path):
    assert damaged_files(tmp_path, {}) == {} and not (tmp_path / STAMPS).exists()


def _tgz(path: Path, member: str, data: bytes) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(member)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


PAYLOAD = bytes(range(256)) * 64


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (None, None),
        (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "cannot be read"),
        (flip_middle, "cannot be read"),
        (lambda p: _tgz(p, "package/other.bin", PAYLOAD), "does not hold package/model.bin"),
        (lambda p: _tgz(p, "package/model.bin", PAYLOAD[::-1]), "holds a model.bin that does not match"),
    ],
    ids=["intact", "truncated", "flipped", "member-missing", "member-changed"],
)
def test_archive_problem(tmp_path, damage, problem):
    archive = _tgz(tmp_path / "pkg-1.0.0.tgz", "package/model.bin", PAYLOAD)
    from edgevision.files import sha256_bytes

    pin = Artifact("model.bin", "npm", "pkg", "1.0.0", "package/model.bin", sha256_bytes(PAYLOAD))
    if damage:
        damage(archive)
    found = archive_problem(archive, [pin])
    assert found == problem if problem is None else found.startswith(problem), found


def test_a_pin_mismatch_removes_the_archive_and_saves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEVISION_CACHE", str(tmp_path / "cache"))
    archive = tmp_path / "cache" / "packages" / "npm" / "pkg-1.0.0.tgz"
    archive.parent.mkdir(parents=True)
    _tgz(archive, "package/model.bin", PAYLOAD)
    pin = Artifact("model.bin", "npm", "pkg", "1.0.0", "package/model.bin", "0" * 64)
    with pytest.raises(EdgevisionError, match="nothing was saved, and the package archive pkg-1.0.0.tgz was removed"):
        fetch_artifact(pin, tmp_path)
    assert not archive.exists() and not (tmp_path / "model.bin").exists()


# ----------------------------------------------------------------------------- bench variants


def test_a_damaged_bench_variant_is_built_again(tmp_path, monkeypatch, caplog):
    from edgevision.benchmark.variants import KINDS, BuildOptions, build_variant, resolve_bench_source
    from edgevision.variants import meta_path, reuse_problem

    monkeypatch.setenv("EDGEVISION_CACHE", str(tmp_path / "cache"))
    source = resolve_bench_source(str(tiny_models.build_torch(tmp_path)["onnx"]))
    kind = KINDS["openvino-fp32"]
    built = build_variant(source, kind, BuildOptions())
    weights = built.path.with_suffix(".bin")
    good = weights.read_bytes()
    assert not built.cached and set(built.meta["files"]) == {"model.xml", "model.bin"}
    assert build_variant(source, kind, BuildOptions()).cached

    flip_middle(weights)
    assert "model.bin does not match its recorded sha256" in reuse_problem(built.path)
    with caplog.at_level(logging.WARNING):
        rebuilt = build_variant(source, kind, BuildOptions())
    assert not rebuilt.cached and rebuilt.path == built.path and weights.read_bytes() == good
    assert "building it again" in caplog.text and reuse_problem(built.path) is None

    meta = json.loads(meta_path(built.path).read_text())
    meta_path(built.path).write_text(json.dumps({k: v for k, v in meta.items() if k != "files"}))
    assert "no recorded hash" in reuse_problem(built.path)  # made before hashes were recorded
    assert not build_variant(source, kind, BuildOptions()).cached


# ----------------------------------------------------------------------------- the cache root


@pytest.mark.parametrize(
    ("where", "said"),
    [("cache-file", "is a file, not a folder"), ("cache-file/sub", "cannot create the cache folder")],
)
def test_a_cache_that_cannot_be_a_folder_is_one_sentence(tmp_path, samples_cache, where, said):
    (tmp_path / "cache-file").write_text("not a folder")
    env = {"EDGEVISION_CACHE": str(tmp_path / where)}
    assert_clean_error(run_cli("zoo", "pull", MODEL, env=env), said, "set EDGEVISION_CACHE to a folder")
    assert_clean_error(run_cli("predict", MODEL, samples_cache[PHOTO], env=env), said)
    assert_clean_error(run_cli("zoo", "verify", env=env), said)
    assert (tmp_path / "cache-file").read_text() == "not a folder" and sorted(tmp_path.iterdir()) == [
        tmp_path / "cache-file"
    ]


def test_a_write_where_no_folder_can_be_is_one_sentence(tmp_path, monkeypatch):
    from edgevision.files import cache_dir, write_atomic

    (tmp_path / "a-file").write_text("x")
    with pytest.raises(EdgevisionError, match="cannot write in .*a-file .*; choose a folder you can write to"):
        write_atomic(tmp_path / "a-file" / "out.json", b"{}")
    monkeypatch.setenv("EDGEVISION_CACHE", str(tmp_path))
    with pytest.raises(EdgevisionError, match="cannot create the cache folder .*a-file/models"):
        cache_dir("a-file", "models")
    with pytest.raises(EdgevisionError, match="cannot write in .*a-file .*; set EDGEVISION_CACHE to a folder"):
        write_atomic(tmp_path / "a-file" / "stamps.json", b"{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
