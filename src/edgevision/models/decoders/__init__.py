"""Decoders of other tools' exports, named in model cards: one file per upstream format.

A decoder turns the output tensors of one export format into ``Detections`` (or
``RawOutputs``) in source-image pixels. It also names the pre-processing that format was
trained with (``defaults``), which a model card may override field by field.

>>> from edgevision.models.decoders import get_decoder, list_decoders
>>> "yolov8" in list_decoders()
True
>>> get_decoder("yolov8").defaults["resize"]
'letterbox'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgevision.discovery import import_submodules
from edgevision.errors import EdgevisionError
from edgevision.models.ops import nms
from edgevision.models.transforms import ImageTransform
from edgevision.types import Detections, Prediction


@dataclass(frozen=True)
class DecodeContext:
    """What a decoder needs beside the outputs: the complete card, the transform, the labels."""

    card: Any  # a complete edgevision.models.card.ModelCard (every field decided)
    transform: ImageTransform
    class_names: tuple[str, ...]

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) of the tensor the model was fed."""
        return self.transform.input_size or self.transform.source_size


@dataclass(frozen=True)
class DecoderSpec:
    """One registered decoder: its name, task, upstream pre-processing and decode function."""

    name: str
    task: str
    summary: str
    decode: Callable[[dict[str, np.ndarray], DecodeContext], Prediction]
    defaults: dict = field(default_factory=dict)


_REGISTRY: dict[str, DecoderSpec] = {}


def register_decoder(name: str, *, task: str, summary: str, **defaults):
    """Function decorator that makes ``decode(outputs, context)`` a decoder called ``name``."""

    def wrap(decode):
        _REGISTRY[name] = DecoderSpec(name, task, summary, decode, defaults)
        return decode

    return wrap


def _discover() -> None:
    import_submodules(__name__)


def list_decoders() -> list[str]:
    """Names of every decoder a card can name."""
    _discover()
    return sorted(_REGISTRY)


def get_decoder(name: str) -> DecoderSpec:
    """The decoder called ``name``; a clear error naming the known ones otherwise."""
    _discover()
    if name not in _REGISTRY:
        raise EdgevisionError(f"unknown decoder '{name}'; choose one of {', '.join(list_decoders())}.")
    return _REGISTRY[name]


def single_output(outputs: dict[str, np.ndarray], decoder: str, *, rank: int = 3) -> np.ndarray:
    """The one output a single-tensor format has (batch 1 dropped), or a sentence why not."""
    tensors = [t for t in outputs.values() if t.ndim == rank and t.shape[0] == 1]
    if len(tensors) != 1:
        shapes = ", ".join(f"{n} {list(t.shape)}" for n, t in outputs.items())
        raise EdgevisionError(
            f"the {decoder} decoder expects one output of rank {rank} with batch 1, got {shapes}; "
            "is this the right decoder for this model?"
        )
    return np.asarray(tensors[0][0], dtype=np.float32)


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) centre, size boxes to corners."""
    half = boxes[:, 2:4] / 2
    return np.concatenate([boxes[:, :2] - half, boxes[:, :2] + half], axis=1)


def finish(
    context: DecodeContext,
    xyxy: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    *,
    suppress: bool = True,
) -> Detections:
    """Threshold, (class-aware) NMS when ``suppress``, and boxes from input to source pixels."""
    card = context.card
    keep = np.nonzero(scores >= card.score_threshold)[0]
    xyxy, scores, class_ids = xyxy[keep], scores[keep], class_ids[keep].astype(np.int64)
    if suppress:
        order = nms(xyxy, scores, class_ids, iou_threshold=card.iou_threshold, max_detections=card.max_detections)
    else:
        order = np.argsort(-scores, kind="stable")[: card.max_detections]
    boxes = context.transform.boxes_to_source(xyxy[order])
    seen = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # boxes wholly in the padding are no objects
    class_ids = class_ids[order][seen]
    return Detections(boxes[seen], scores[order][seen], class_ids, named(context.class_names, class_ids))


def named(names: tuple[str, ...], class_ids: np.ndarray) -> tuple[str, ...]:
    """``names``, with ``class N`` added for ids the labels do not reach (a short label list)."""
    top = int(class_ids.max()) + 1 if len(class_ids) else 0
    return names + tuple(f"class {i}" for i in range(len(names), top))


def best_class(class_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Score and id of the best class of each row of ``(N, C)`` scores."""
    ids = class_scores.argmax(axis=1) if class_scores.shape[1] else np.zeros(len(class_scores), np.int64)
    best = class_scores[np.arange(len(class_scores)), ids] if class_scores.shape[1] else np.zeros(len(ids))
    return best.astype(np.float32), ids.astype(np.int64)


def anchor_free_count(input_size: tuple[int, int], strides: tuple[int, ...], *, ceil: bool = False) -> int:
    """Grid cells over all levels for an input of ``(width, height)`` (YOLOX, YOLOv8, NanoDet)."""
    w, h = input_size
    if ceil:
        return sum(-(-w // s) * -(-h // s) for s in strides)
    return sum((w // s) * (h // s) for s in strides)


def grid_centres(input_size: tuple[int, int], strides: tuple[int, ...], *, ceil: bool = False) -> tuple:
    """(cells (N, 2) as (col, row), stride (N,)) of every grid cell, level by level, row-major."""
    w, h = input_size
    cells, per_cell = [], []
    for s in strides:
        gw, gh = (-(-w // s), -(-h // s)) if ceil else (w // s, h // s)
        ys, xs = np.mgrid[0:gh, 0:gw]
        cells.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        per_cell.append(np.full(gw * gh, s, dtype=np.float32))
    return np.concatenate(cells).astype(np.float32), np.concatenate(per_cell)
