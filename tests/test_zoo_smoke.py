"""Every zoo model pulls, and runs on a real photo with a sensible answer.

Parametrised over ``list_models()``, so a new zoo entry is tested without anyone listing it.
"""

from __future__ import annotations

import pytest

from edgevision.media import read_image
from edgevision.types import Detections, Poses
from edgevision.zoo import get_spec, is_cached, list_models, pull
from edgevision.zoo.assemble import load_predictor

PULLED = [n for n in list_models() if get_spec(n).artifacts]


@pytest.mark.parametrize("name", PULLED)
def test_pull_is_cached_and_instant(name):
    import time

    folder = pull(name)
    assert is_cached(name)
    for filename in get_spec(name).files.values():
        assert (folder / filename).stat().st_size > 10_000
    start = time.perf_counter()
    assert pull(name) == folder
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize("name", PULLED)
def test_model_sees_the_person(name, samples_cache):
    spec = get_spec(name)
    prediction = load_predictor(name, threads=2)(read_image(samples_cache["person.jpg"]))
    if spec.task == "detection":
        assert isinstance(prediction, Detections)
        people = [i for i in range(len(prediction)) if prediction.label(i).lower() == "person"]
        assert people, prediction.to_records()
        x1, y1, x2, y2 = prediction.xyxy[people[0]]
        assert (x2 - x1) > 40 and (y2 - y1) > 150  # a standing person, not a speck
    else:
        assert isinstance(prediction, Poses) and len(prediction) >= 1
        assert (prediction.keypoints[0, :, 2] > 0.3).sum() >= 8


@pytest.mark.parametrize("name", PULLED)
def test_model_on_empty_image_finds_nothing_confident(name):
    import numpy as np

    prediction = load_predictor(name)(np.full((240, 320, 3), 127, np.uint8))
    if prediction.task == "detection":
        assert (prediction.scores >= 0.5).sum() == 0
    else:
        assert all((p[:, 2] > 0.5).sum() < 5 for p in prediction.keypoints)


PYTORCH = [n for n in list_models() if get_spec(n).build is not None]
# The largest members of a family run the same export and decoding code as its small ones at
# minutes of CPU each (yolox-x: 281 GFLOPs a frame); they are built and run in PyTorch only.
LARGE = {"yolox-m", "yolox-l", "yolox-x"}


@pytest.mark.parametrize("name", [n for n in PYTORCH if n not in LARGE])
def test_pytorch_family_runs_with_random_weights(name, samples_cache):
    pytest.importorskip("torch")
    predictor = load_predictor(name, random_weights=True, threads=2)
    prediction = predictor(read_image(samples_cache["person.jpg"]))
    assert predictor.random_weights
    assert prediction.task == get_spec(name).task


@pytest.mark.parametrize("name", sorted(LARGE & set(PYTORCH)))
def test_large_pytorch_models_build_and_run(name):
    """The same head as the small members: one row per anchor point of strides 8, 16, 32."""
    torch = pytest.importorskip("torch")
    from edgevision.zoo.pytorch import build_module

    module = build_module(get_spec(name), random_weights=True)
    with torch.inference_mode():
        outputs = module(torch.zeros(1, 3, 128, 128))
    rows = sum((128 // s) ** 2 for s in (8, 16, 32))
    first = outputs[0] if isinstance(outputs, (tuple, list)) else outputs
    assert first.shape[:2] == (1, rows), [tuple(o.shape) for o in outputs]
