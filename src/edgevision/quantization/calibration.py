"""Calibration data: real images pre-processed exactly as at inference, plus a held-out set.

>>> from edgevision.models.nanodet import NanoDetProcessor
>>> calib = load_calibration("vtest.avi", NanoDetProcessor(), input_name="data")  # doctest: +SKIP
>>> len(calib.feeds), len(calib.holdout_feeds)                                  # doctest: +SKIP
(64, 16)

Images come from a folder, a glob or a video file (frames taken evenly over the whole
video). Each one goes through the model family's own ``processor.preprocess``, so the
quantizer sees the tensors the model will see. The held-out images never calibrate; they
measure how much the quantized model still agrees with the float one.
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
    images, names = read_images(source, count + holdout, min_images=min_images)
    calib, held = split_holdout(images, holdout)
    extra = [holdout_source] if isinstance(holdout_source, str) else list(holdout_source or ())
    for other in extra:
        held += read_images(other, max(holdout, 1), min_images=1)[0]
    description = {
        "source": str(source),
        "count": len(calib),
        "holdout": len(held),
        "holdout_source": [str(source), *map(str, extra)],
        "first": names[0],
        "last": names[-1],
    }
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
    [1, 4, 8]
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
