"""Calibration data: real images pre-processed exactly as at inference, plus a held-out set.

>>> from edgevision.models.nanodet import NanoDetProcessor
>>> calib = load_calibration("vtest.avi", NanoDetProcessor(), input_name="data")  # doctest: +SKIP
>>> len(calib.feeds), len(calib.holdout_feeds)                                  # doctest: +SKIP
(64, 16)

Images come from a folder, a glob or a video file (frames taken evenly over the whole
video). Each one goes through the model family's own ``processor.preprocess``, so the
quantizer sees the tensors the model will see. The held-out images never calibrate; they
measure how much the quantized model still agrees with the float one.

Pose models are judged on people who fill much of the image, as they are used: when
photos are given to hold out (``holdout_source``), they alone are held out, each with its
mirror image and its centre crop (``large_people_views``), and every image of ``source``
calibrates. On a street video a single-pose model picks one of many distant pedestrians, a
toss-up between float and int8 that says nothing about its keypoints. So that calibration
sees people that large too, every other calibration image is replaced by a zoomed-in part
of itself (``zoomed_views``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgevision.errors import EdgevisionError
from edgevision.media import is_video, list_images, open_video, read_image
from edgevision.models.base import Processor
from edgevision.models.transforms import ImageTransform
from edgevision.quantization.base import Feeds

logger = logging.getLogger(__name__)

MIN_IMAGES = 8


@dataclass
class CalibrationSet:
    """Calibration feeds, and held-out feeds with their images for task-level agreement."""

    feeds: list[Feeds]
    holdout_feeds: list[Feeds]
    holdout_images: list[np.ndarray]
    holdout_transforms: list[ImageTransform]
    description: dict = field(default_factory=dict)  # source, counts, for the metadata file


def load_calibration(
    source: str,
    processor: Processor,
    *,
    input_name: str,
    count: int = 64,
    holdout: int = 16,
    holdout_source: str | Sequence[str] | None = None,
    min_images: int = MIN_IMAGES,
) -> CalibrationSet:
    """Read ``count`` calibration and ``holdout`` held-out images and pre-process them.

    ``source`` is a folder, glob or video; ``holdout`` other images of it are held out, and
    the images of ``holdout_source`` (one or several folders, globs, files or videos, up
    to ``holdout`` images each) are held out in addition. Raises ``EdgevisionError`` when
    a source is missing, empty, unreadable or ``source`` holds fewer than ``min_images``.
    """
    if count < 1 or holdout < 0:
        raise EdgevisionError(f"calibration needs count >= 1 and holdout >= 0, got {count} and {holdout}.")
    extra = [holdout_source] if isinstance(holdout_source, str) else list(holdout_source or ())
    pose = getattr(processor, "task", "") == "pose" and bool(extra)
    images, names = read_images(source, count if pose else count + holdout, min_images=min_images)
    calib, held = (zoomed_views(images), []) if pose else split_holdout(images, holdout)
    for other in extra:
        held += read_images(other, max(holdout, 1), min_images=1)[0]
    held = [view for image in held for view in large_people_views(image)] if pose else held
    description = {
        "source": str(source),
        "count": len(calib),
        "holdout": len(held),
        "holdout_source": [*([] if pose else [str(source)]), *map(str, extra)],
        "first": names[0],
        "last": names[-1],
    }
    if pose:
        description["views"] = POSE_VIEWS
    logger.info("calibration: %d images from %s, %d held out", len(calib), source, len(held))
    return _preprocess_all(calib, held, processor, input_name, description)


def holdout_only(
    images: list[np.ndarray], processor: Processor, *, input_name: str, description: dict
) -> CalibrationSet:
    """A set of held-out images only, for steps that need no calibration but are checked (fp16)."""
    return _preprocess_all([], list(images), processor, input_name, {"count": 0, "holdout": len(images), **description})


def noise_images(count: int = 4, *, seed: int = 0) -> list[np.ndarray]:
    """Seeded random 480x640 BGR images: inputs for a parity check when no photo can be read."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(count)]


POSE_VIEWS = (
    "pose: every other calibration image zoomed in (a quarter to half of it); "
    "held out: each photo, its mirror image and their centre crops (80%)"
)


def large_people_views(image: np.ndarray) -> list[np.ndarray]:
    """``image``, its mirror image, and the central 80% of both: four views of its people.

    >>> [v.shape for v in large_people_views(np.zeros((100, 200, 3), np.uint8))]
    [(100, 200, 3), (100, 200, 3), (80, 160, 3), (80, 160, 3)]
    """
    mirror = np.ascontiguousarray(image[:, ::-1])
    h, w = image.shape[:2]
    top, left = h // 10, w // 10
    return [image, mirror, *(np.ascontiguousarray(v[top : h - top, left : w - left]) for v in (image, mirror))]


def zoomed_views(images: list[np.ndarray], *, seed: int = 0) -> list[np.ndarray]:
    """``images`` with every other one replaced by a seeded crop of a quarter to half its sides.

    Pre-processing scales the crop up to the model's input, so people a tenth of the frame
    high come out as large as in a photo of one or a few people.

    >>> views = zoomed_views([np.zeros((100, 200, 3), np.uint8)] * 4)
    >>> [v.shape[1] <= 100 for v in views]
    [False, True, False, True]
    """
    rng = np.random.default_rng(seed)
    views = []
    for index, image in enumerate(images):
        if index % 2 == 0:
            views.append(image)
            continue
        h, w = image.shape[:2]
        scale = rng.uniform(0.25, 0.5)
        ch, cw = max(1, int(h * scale)), max(1, int(w * scale))
        top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        views.append(np.ascontiguousarray(image[top : top + ch, left : left + cw]))
    return views


def split_holdout(images: list[np.ndarray], holdout: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Every k-th image held out (spread over the source), the rest for calibration.

    At most a quarter of the images are held out, so calibration keeps the majority.

    >>> split_holdout(list(range(8)), 2)
    ([0, 1, 2, 4, 5, 6], [3, 7])
    """
    holdout = min(holdout, len(images) // 4)
    if holdout == 0:
        return list(images), []
    step = len(images) / holdout
    held_idx = {int((i + 1) * step) - 1 for i in range(holdout)}
    calib = [im for i, im in enumerate(images) if i not in held_idx]
    held = [im for i, im in enumerate(images) if i in held_idx]
    return calib, held


def _preprocess_all(
    calib: list[np.ndarray], held: list[np.ndarray], processor: Processor, input_name: str, description: dict
) -> CalibrationSet:
    feeds = [{input_name: processor.preprocess(image)[0]} for image in calib]
    held_out = [processor.preprocess(image) for image in held]
    return CalibrationSet(
        feeds=feeds,
        holdout_feeds=[{input_name: tensor} for tensor, _ in held_out],
        holdout_images=held,
        holdout_transforms=[transform for _, transform in held_out],
        description=description,
    )


# ----------------------------------------------------------------------------- reading


def read_images(source: str, wanted: int, *, min_images: int = MIN_IMAGES) -> tuple[list[np.ndarray], list[str]]:
    """Up to ``wanted`` BGR images from ``source`` (spread evenly) and where each came from."""
    if is_video(source):
        images, names = _read_video(source, wanted)
    else:
        images, names = _read_image_files(source, wanted)
    if len(images) < min_images:
        raise EdgevisionError(
            f"{source} gives {len(images)} image(s); calibration needs at least {min_images}. "
            "Add images, or use a video file."
        )
    return images, names


def _read_image_files(source: str, wanted: int) -> tuple[list[np.ndarray], list[str]]:
    paths = list_images(source)  # raises for a missing path, an empty folder or glob
    chosen = [paths[i] for i in evenly_spaced(len(paths), wanted)]
    return [read_image(p) for p in chosen], [str(p) for p in chosen]


def evenly_spaced(total: int, wanted: int) -> list[int]:
    """``wanted`` indices spread over ``range(total)`` (all of them when ``total <= wanted``).

    >>> evenly_spaced(10, 3)
    [1, 5, 8]
    """
    if total <= wanted:
        return list(range(total))
    return sorted({int((i + 0.5) * total / wanted) for i in range(wanted)})


def _read_video(path: str, wanted: int) -> tuple[list[np.ndarray], list[str]]:
    """Frames spread evenly over the video, decoded in one pass (seeking is unreliable).

    When the container does not tell its frame count, the first ``10 * wanted`` frames are
    read and thinned.
    """
    total = _frame_count(path)
    keep = set(evenly_spaced(total, wanted)) if total else None
    limit = max(keep) + 1 if keep else 10 * wanted
    cap = open_video(path)
    images: list[np.ndarray] = []
    names: list[str] = []
    try:
        index = 0
        while index < limit:
            ok, image = cap.read()
            if not ok:
                break
            if keep is None or index in keep:
                images.append(image)
                names.append(f"{Path(path).name}#{index}")
            index += 1
    finally:
        cap.release()
    if not images:
        raise EdgevisionError(f"cannot read any frame from {path}; is the video empty or corrupt?")
    return _thin(images, names, wanted)


def _frame_count(path: str) -> int:
    cap = open_video(path)  # raises for a missing or undecodable file
    total = int(cap.get(7))  # cv2.CAP_PROP_FRAME_COUNT
    cap.release()
    return max(total, 0)


def _thin(images: list[np.ndarray], names: list[str], wanted: int) -> tuple[list[np.ndarray], list[str]]:
    idx = evenly_spaced(len(images), wanted)
    return [images[i] for i in idx], [names[i] for i in idx]
