"""A benchmark's inputs: thread counts, the images scored for accuracy, and their COCO annotations."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgevision.checks import MAX_THREADS
from edgevision.errors import EdgevisionError
from edgevision.media import read_image
from edgevision.quantization.calibration import read_images
from edgevision.samples import DEFAULT_VIDEO, PHOTOS, sample_path


def parse_threads(text: str | tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """Thread counts from ``"1,2"``; zero, negative or non-numbers are a clear error.

    >>> parse_threads("1,2")
    (1, 2)
    """
    parts = [str(p).strip() for p in (text.split(",") if isinstance(text, str) else text)]
    try:
        values = tuple(int(p) for p in parts if p)
    except ValueError:
        raise EdgevisionError(f"--threads takes whole numbers separated by commas, like 1,2; got '{text}'.") from None
    if not values or min(values) < 1 or max(values) > MAX_THREADS:
        raise EdgevisionError(
            f"--threads values must be 1 or more and at most {MAX_THREADS}, like 1,2; got '{','.join(parts)}'."
        )
    return tuple(dict.fromkeys(values))


@dataclass
class DataSet:
    """Images scored for accuracy: BGR arrays and the names (file names) they came from."""

    images: list[np.ndarray]
    names: list[str]


def load_data(data: str | None, count: int) -> DataSet:
    """``count`` images of ``data`` (folder, glob or video); default: the sample photos and video frames."""
    if data is not None:
        images, names = read_images(data, count, min_images=1)
        return DataSet(images, names)
    images = [read_image(sample_path(name)) for name in PHOTOS]
    frames, frame_names = read_images(str(sample_path(DEFAULT_VIDEO)), max(count - len(images), 0) or 1, min_images=1)
    return DataSet(images + frames, list(PHOTOS) + frame_names)


def match_annotations(annotations: Path, names: list[str]) -> tuple[dict, list[int], list[int]]:
    """The COCO file, and (data index, image id) pairs of the images it annotates, by file name.

    Raises a clear error when the file is unreadable, not COCO, or annotates none of the images.
    """
    try:
        gt = json.loads(Path(annotations).read_text())
    except (OSError, ValueError) as exc:
        raise EdgevisionError(f"cannot read annotations {annotations}: {exc}.") from None
    if not isinstance(gt, dict) or not isinstance(gt.get("images"), list) or "annotations" not in gt:
        raise EdgevisionError(f"{annotations} is not a COCO annotations file (it needs 'images' and 'annotations').")
    by_name = {Path(str(im.get("file_name", ""))).name: im["id"] for im in gt["images"]}
    pairs = [(i, by_name[Path(n).name]) for i, n in enumerate(names) if Path(n).name in by_name]
    if not pairs:
        raise EdgevisionError(
            f"{annotations} annotates none of the {len(names)} images given with --data "
            f"(matched by file name, e.g. {Path(names[0]).name}); give the images the annotations describe."
        )
    return gt, [i for i, _ in pairs], [image_id for _, image_id in pairs]
