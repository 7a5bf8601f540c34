"""A benchmark's inputs: thread counts, the images scored for accuracy, and their COCO annotations."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgevision.checks import MAX_THREADS, media_input
from edgevision.errors import EdgevisionError
from edgevision.media import expand_sources, read_image
from edgevision.quantization.calibration import evenly_spaced, large_people_views, read_images
from edgevision.samples import DEFAULT_VIDEO, PHOTOS, POSE_PHOTOS, sample_path


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


Data = str | Sequence[str] | None


def data_sources(data: Data) -> list[str]:
    """The sources of ``--data``: one (``"frames/"``) or several (``["a.jpg", "shots/*.png"]``)."""
    return [] if data is None else [data] if isinstance(data, str) else [str(d) for d in data]


def check_data(data: Data) -> None:
    """Raise, before any work, when a ``--data`` source is missing or holds no image."""
    for source in data_sources(data):
        media_input(source, what="--data images")
    if data_sources(data):
        expand_sources(data_sources(data))


def load_data(data: Data, count: int, *, task: str | None = None) -> DataSet:
    """``count`` images of ``data``, spread evenly; default: the sample photos and video frames, or
    for pose models the photos of large people with their mirror images and centre crops (as
    quantize holds them out: a single-pose model on a crowd picks a pedestrian at random).

    ``data``: images, folders or globs of images and videos, one or several; a file named
    twice is read once, and of each video ``count`` frames are taken evenly.
    """
    if data_sources(data):
        return _read_sources(data_sources(data), count)
    if task == "pose":
        views = [
            (f"{name}:view{i}", v)
            for name in POSE_PHOTOS
            for i, v in enumerate(large_people_views(read_image(sample_path(name))))
        ]
        return DataSet([v for _, v in views], [n for n, _ in views])
    images = [read_image(sample_path(name)) for name in PHOTOS]
    frames, frame_names = read_images(str(sample_path(DEFAULT_VIDEO)), max(count - len(images), 0) or 1, min_images=1)
    return DataSet(images + frames, list(PHOTOS) + frame_names)


def _read_sources(sources: list[str], count: int) -> DataSet:
    entries: list[tuple[str, Path | np.ndarray]] = []  # (name, image file or decoded frame)
    for file in expand_sources(sources):
        if file.video:
            frames, names = read_images(str(file.path), count, min_images=1)
            entries.extend(zip(names, frames))
        else:
            entries.append((str(file.path), file.path))
    chosen = [entries[i] for i in evenly_spaced(len(entries), count)]
    images = [item if isinstance(item, np.ndarray) else read_image(item) for _, item in chosen]
    return DataSet(images, [name for name, _ in chosen])


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
