"""A bundle's check set: a few photos and the fp32 model's predictions on them.

The agreement with fp32 a bundle records was measured on the machine that built it, and
int8 kernels differ between CPUs: LiteRT's XNNPACK rounds otherwise on arm64 than on x86,
oneDNN otherwise with VNNI than without. A bundle therefore carries the sample photos its
task is judged on (scaled to at most 640 pixels, as JPEG) and what the fp32 source model
found on exactly those pixels, so ``bench BUNDLE`` measures the agreement again on the
board itself, with the metric quantize uses (both sides decoded down to a score of 0.05).

>>> files, section = make_check_set("nanodet-m", Path("variant.onnx"), Path("staging"))  # doctest: +SKIP
>>> section["agreement_when_built"]                                                       # doctest: +SKIP
0.9834
>>> measure_check_set(Path("bundle"), section, predictor)                                # doctest: +SKIP
0.9811
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgevision.compare import evaluation_processor, metric_name, task_agreement
from edgevision.errors import EdgevisionError
from edgevision.media import read_image, write_image
from edgevision.models.base import Predictor
from edgevision.quantization.api import default_holdout_photos
from edgevision.types import Detections, Poses, Prediction
from edgevision.zoo.assemble import load_predictor

PREFIX = "check-"  # bundle files are flat; the check set's names start with this
REFERENCE = f"{PREFIX}reference.npz"
MAX_SIDE = 640
JPEG_QUALITY = 92
TASKS = ("detection", "pose")


def make_check_set(source_model: str, variant: Path, folder: Path) -> tuple[list[Path], dict]:
    """Write the check set of ``source_model`` into ``folder`` and score ``variant`` on it.

    Returns the files written and the ``check`` section of ``bundle.json``; nothing when
    the model's task has no task-level metric (raw outputs) or the photos are unavailable.
    """
    reference_model = evaluating(load_predictor(source_model))
    task = getattr(reference_model, "task", "raw")
    photos = default_holdout_photos(getattr(reference_model, "processor", None)) if task in TASKS else []
    if not photos:
        return [], {}
    names = [_write_photo(Path(p), folder) for p in photos]
    images = [check_image(folder / name) for name in names]  # the decoded JPEG pixels, as the board reads them
    reference = [reference_model(image) for image in images]
    np.savez_compressed(folder / REFERENCE, **_arrays(reference))
    built = _agreement(task, reference, load_predictor(str(variant)), images)
    section = {
        "images": names,
        "reference": REFERENCE,
        "task": task,
        "metric": metric_name(task),
        "reference_model": f"{source_model} fp32",
        "agreement_when_built": round(built, 4),
    }
    return [folder / n for n in (*names, REFERENCE)], section


def measure_check_set(folder: Path, section: dict, predictor: Predictor) -> float:
    """The agreement of ``predictor`` (the bundle's model, loaded here) on the check set in ``folder``."""
    task = section["task"]
    images = [check_image(Path(folder) / name) for name in section["images"]]
    with np.load(Path(folder) / section["reference"]) as stored:
        reference = _predictions(dict(stored), len(images), task)
    return _agreement(task, reference, predictor, images)


def _agreement(task: str, reference: list[Prediction], predictor: Predictor, images: list[np.ndarray]) -> float:
    model = evaluating(predictor)
    return float(task_agreement(task, reference, [model(image) for image in images]))


def evaluating(predictor: Predictor) -> Predictor:
    """``predictor`` decoding down to the evaluation threshold, where its decoder has one."""
    processor = getattr(predictor, "processor", None)
    if processor is not None:
        predictor.processor = evaluation_processor(processor) or processor
    return predictor


def _write_photo(photo: Path, folder: Path) -> str:
    image = read_image(photo)
    scale = MAX_SIDE / max(image.shape[:2])
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    name = f"{PREFIX}{photo.stem}.jpg"
    write_image(folder / name, image, (cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY))
    return name


def check_image(path: Path) -> np.ndarray:
    """A check photo of a bundle, decoded; one sentence when it is unreadable."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise EdgevisionError(f"the bundle's check image {path.name} is unreadable; export the bundle again.")
    return image


def _arrays(predictions: list[Prediction]) -> dict[str, np.ndarray]:
    """One array per field and image: ``0.xyxy``, ``0.scores``, ... (``keypoints`` for poses)."""
    fields = {Detections: ("xyxy", "scores", "class_ids"), Poses: ("keypoints", "scores")}
    return {f"{i}.{name}": getattr(p, name) for i, p in enumerate(predictions) for name in fields[type(p)]}


def _predictions(arrays: dict[str, np.ndarray], count: int, task: str) -> list[Prediction]:
    try:
        if task == "detection":
            return [
                Detections(arrays[f"{i}.xyxy"], arrays[f"{i}.scores"], arrays[f"{i}.class_ids"]) for i in range(count)
            ]
        return [Poses(arrays[f"{i}.keypoints"], arrays[f"{i}.scores"], (), ()) for i in range(count)]
    except KeyError as exc:
        raise EdgevisionError(f"the bundle's {REFERENCE} lacks {exc}; export the bundle again.") from None
