"""Model cards: how to feed a model an image and how to read its outputs.

A card names a decoder (``yolov8``, ``yolov5``, ``yolox``, ``nanodet-plus``, ``tfod-ssd``,
``ssd-anchors``, ``boxes-scores``, ``raw``; see ``edgevision.models.decoders``) and any
pre-processing that differs from that decoder's upstream defaults. Every field but
``decoder`` is optional. As YAML, beside ``model.onnx`` as ``model.onnx.card.yaml``:

.. code-block:: yaml

    decoder: yolov8
    input_size: [640, 480]        # width, height; default: the model's input, else upstream's
    resize: letterbox             # letterbox | letterbox-corner | stretch | native
    color: rgb                    # rgb | bgr
    mean: 0                       # pixel units (0-255): x = (pixel - mean) / std
    std: 255
    labels: labels.txt            # coco80 | coco91 | a file (one name a line) | a list
    score_threshold: 0.3
    iou_threshold: 0.5

>>> card = ModelCard(decoder="yolov8", score_threshold=0.5)
>>> card.task
'detection'
>>> ModelCard.model_validate({"decoder": "yolov8", "labels": ["cat", "dog"]}).labels
['cat', 'dog']
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edgevision.errors import EdgevisionError
from edgevision.models.coco import COCO80_CLASSES, COCO91_CLASSES
from edgevision.models.decoders import DecodeContext, get_decoder, list_decoders
from edgevision.models.transforms import ImageTransform, letterbox, resize, to_tensor
from edgevision.types import Prediction, TensorSpec
from edgevision.variants import CARD_KEY

CARD_SUFFIXES = (".card.yaml", ".card.yml", ".card.json")
METADATA_KEY = CARD_KEY  # ONNX metadata_props key / OpenVINO rt_info key of an embedded card
BUILTIN_LABELS = {"coco80": COCO80_CLASSES, "coco91": COCO91_CLASSES}
DEFAULT_SIDE = 640  # a dynamic spatial dimension with no card value and no upstream default
Triple = tuple[float, float, float]


class ModelCard(BaseModel):
    """How to feed and read one model; ``None`` fields take the decoder's upstream defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    decoder: str = "raw"
    input_size: tuple[int, int] | None = Field(None, description="width, height of the model input")
    layout: Literal["nchw", "nhwc"] | None = None
    color: Literal["rgb", "bgr"] | None = None
    mean: Triple | None = None
    std: Triple | None = None
    resize: Literal["letterbox", "letterbox-corner", "stretch", "native"] | None = None
    pad_value: int | None = Field(None, ge=0, le=255)
    labels: str | list[str] | None = None
    class_offset: int = 0  # added to the model's class index before naming it
    score_threshold: float | None = Field(None, ge=0, le=1)
    iou_threshold: float | None = Field(None, gt=0, le=1)
    max_detections: int = Field(100, ge=1)
    outputs: dict[str, str] = Field(default_factory=dict)  # role -> output name, for decoders that ask
    anchors: dict | None = None  # ssd-anchors only

    @field_validator("decoder")
    @classmethod
    def _known_decoder(cls, value: str) -> str:
        if value not in list_decoders():
            raise ValueError(f"unknown decoder '{value}'; choose one of {', '.join(list_decoders())}")
        return value

    @field_validator("mean", "std", mode="before")
    @classmethod
    def _three(cls, value):
        return (value,) * 3 if isinstance(value, int | float) else value

    @field_validator("std")
    @classmethod
    def _no_zero(cls, value):
        if value is not None and 0 in value:
            raise ValueError("std must not be 0")
        return value

    @field_validator("input_size")
    @classmethod
    def _positive(cls, value):
        if value is not None and min(value) < 1:
            raise ValueError("input_size must be positive")
        return value

    @property
    def task(self) -> str:
        return get_decoder(self.decoder).task

    def merged(self, overrides: dict) -> ModelCard:
        """This card with the non-None ``overrides`` fields replaced (and checked)."""
        values = {**self.model_dump(exclude_defaults=True), **{k: v for k, v in overrides.items() if v is not None}}
        return card_from_dict(values, "the given options")

    def fields(self) -> dict:
        """The fields that were set, JSON-ready (what a produced file's metadata keeps)."""
        return self.model_dump(exclude_defaults=True, mode="json")


def card_from_dict(values: dict, where: str) -> ModelCard:
    """A card from ``values``; one sentence naming ``where`` and the bad field otherwise."""
    try:
        return ModelCard.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "card"
        raise EdgevisionError(f"the model card in {where} is not valid: {field}: {first['msg']}.") from None


def card_from_json(text: str, where: str) -> ModelCard:
    """A card from JSON text (as embedded in a model file); one sentence when it is not one."""
    try:
        values = json.loads(text)
    except ValueError as exc:
        raise EdgevisionError(
            f"the model card in {where} is not valid JSON ({exc}); give a card with --card FILE instead."
        ) from None
    return card_from_dict(values, where)


def read_card(path: Path) -> ModelCard:
    """A card from a ``.yaml`` / ``.yml`` / ``.json`` file; a label file it names is read beside it."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise EdgevisionError(f"cannot read the model card {path}: {exc.strerror or exc}.") from None
    values = _parse(text, path)
    if not isinstance(values, dict):
        raise EdgevisionError(f"the model card {path} must be a mapping of fields (decoder: ..., labels: ...).")
    labels = values.get("labels")
    if isinstance(labels, str) and labels not in BUILTIN_LABELS and not Path(labels).is_absolute():
        values["labels"] = str(path.parent / labels)
    return card_from_dict(values, str(path))


def _parse(text: str, path: Path):
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        import yaml

        return yaml.safe_load(text)
    except Exception as exc:  # yaml and json raise several types for malformed text
        raise EdgevisionError(f"the model card {path} cannot be parsed: {str(exc).splitlines()[0]}.") from None


def card_file_beside(model: Path) -> Path | None:
    """``model.onnx.card.yaml`` (or ``.yml``, ``.json``) when it exists."""
    for suffix in CARD_SUFFIXES:
        candidate = model.with_name(model.name + suffix)
        if candidate.is_file():
            return candidate
    return None


def class_names_of(card: ModelCard) -> tuple[str, ...]:
    """The names the card's labels give (built-in set, file or list); empty when none."""
    labels = card.labels
    if labels is None:
        return ()
    if isinstance(labels, list):
        return tuple(labels)
    if labels in BUILTIN_LABELS:
        return BUILTIN_LABELS[labels]
    try:
        return tuple(line.strip() for line in Path(labels).read_text().splitlines() if line.strip())
    except OSError as exc:
        raise EdgevisionError(f"cannot read the label file {labels}: {exc.strerror or exc}.") from None


# ----------------------------------------------------------------------------- resolving


@dataclass(frozen=True)
class ResolvedCard:
    """A card with every field decided for one model input, and what had to be assumed."""

    card: ModelCard
    dtype: str
    assumed: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line: decoder, labels and the pre-processing used."""
        c = self.card
        size = "image size" if c.resize == "native" else f"{c.input_size[0]}x{c.input_size[1]} {c.resize}"
        norm = "no scaling" if np.dtype(self.dtype).kind != "f" else f"(x - {_fmt(c.mean)}) / {_fmt(c.std)}"
        labels = (
            f"{len(class_names_of(c))} labels ({c.labels if isinstance(c.labels, str) and c.labels in BUILTIN_LABELS else 'given'})"
            if c.labels
            else "no labels"
        )
        parts = [f"{c.decoder} decoder ({c.task})", size, c.color.upper(), norm, f"{c.layout.upper()} {self.dtype}"]
        if c.task == "detection":
            parts += [labels, f"score >= {c.score_threshold:g}"]
        line = ", ".join(parts)
        return line + (f"; assumed {', '.join(self.assumed)}" if self.assumed else "")


def _fmt(values: Triple) -> str:
    return f"{values[0]:g}" if len(set(values)) == 1 else "(" + ", ".join(f"{v:g}" for v in values) + ")"


def resolve_card(card: ModelCard, image_input: TensorSpec) -> ResolvedCard:
    """Fill ``card``'s unset fields from the model's image input and the decoder's defaults."""
    defaults = dict(get_decoder(card.decoder).defaults)
    shape = image_input.shape
    if len(shape) != 4 or 3 not in (shape[1], shape[3]):
        raise EdgevisionError(
            f"input {image_input.name} {list(shape)} is not an image (4-D with 3 channels); "
            "edgevision feeds images to the first input."
        )
    values = card.model_dump(exclude_none=True)
    assumed = []
    layout = card.layout or ("nchw" if shape[1] == 3 and shape[3] != 3 else "nhwc")
    h, w = (shape[2], shape[3]) if layout == "nchw" else (shape[1], shape[2])
    resize_kind = card.resize or defaults.get("resize", "stretch")
    if card.input_size is None:
        if w and h:
            values["input_size"] = (w, h)
        elif resize_kind != "native":
            values["input_size"] = defaults.get("input_size", (DEFAULT_SIDE, DEFAULT_SIDE))
            assumed.append(f"input size {values['input_size'][0]}x{values['input_size'][1]} (the model's is dynamic)")
    elif w and h and tuple(card.input_size) != (w, h):
        raise EdgevisionError(
            f"the card's input size {card.input_size[0]}x{card.input_size[1]} does not match the model's "
            f"fixed input {w}x{h}; remove input_size from the card."
        )
    if w and h and resize_kind == "native":
        resize_kind = defaults.get("resize") if defaults.get("resize") != "native" else "stretch"
    values.update(layout=layout, resize=resize_kind)
    for key in ("color", "mean", "std", "pad_value", "labels", "score_threshold", "iou_threshold"):
        values.setdefault(key, defaults.get(key, _FALLBACK[key]))
    values.setdefault("input_size", None)
    return ResolvedCard(ModelCard.model_validate(values), image_input.dtype, tuple(assumed))


_FALLBACK = {
    "color": "rgb",
    "mean": 0.0,
    "std": 255.0,
    "pad_value": 114,
    "labels": None,
    "score_threshold": 0.25,
    "iou_threshold": 0.5,
}


# ----------------------------------------------------------------------------- processor


class CardProcessor:
    """Pre-processing and decoding as a resolved card says: a ``Processor`` for any export.

    >>> from edgevision.types import TensorSpec
    >>> spec = TensorSpec("images", (1, 3, 64, 64), "float32")
    >>> p = CardProcessor(resolve_card(ModelCard(decoder="yolov8"), spec))
    >>> p.preprocess(np.zeros((48, 80, 3), np.uint8))[0].shape
    (1, 3, 64, 64)
    """

    def __init__(self, resolved: ResolvedCard) -> None:
        self.resolved = resolved
        self.card = resolved.card
        self.task = self.card.task
        self.class_names = class_names_of(self.card)
        self._decode = get_decoder(self.card.decoder).decode
        self._mean = np.array(self.card.mean, np.float32)
        self._std = np.array(self.card.std, np.float32)

    def with_score_threshold(self, value: float) -> CardProcessor:
        """The same processor keeping objects down to ``value`` (for mAP evaluation)."""
        card = self.card.model_copy(update={"score_threshold": value})
        return CardProcessor(ResolvedCard(card, self.resolved.dtype, self.resolved.assumed))

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, ImageTransform]:
        card = self.card
        fitted, transform = self._fit(image)
        if np.dtype(self.resolved.dtype).kind == "f":
            x = to_tensor(
                fitted,
                mean=tuple(self._mean),
                std=tuple(self._std),
                swap_rb=card.color == "rgb",
                nchw=card.layout == "nchw",
            )
            return np.ascontiguousarray(x, dtype=self.resolved.dtype), transform
        x = cv2.cvtColor(fitted, cv2.COLOR_BGR2RGB) if card.color == "rgb" else fitted
        x = x.transpose(2, 0, 1)[None] if card.layout == "nchw" else x[None]
        return np.ascontiguousarray(x, dtype=self.resolved.dtype), transform

    def _fit(self, image: np.ndarray) -> tuple[np.ndarray, ImageTransform]:
        card = self.card
        if card.resize == "native":
            h, w = image.shape[:2]
            return image, ImageTransform(1.0, 1.0, 0.0, 0.0, (w, h), (w, h))
        size = tuple(card.input_size)
        if card.resize == "stretch":
            return resize(image, size)
        return letterbox(image, size, pad_value=card.pad_value, center=card.resize == "letterbox")

    def decode(self, outputs: dict[str, np.ndarray], transform: ImageTransform) -> Prediction:
        return self._decode(outputs, DecodeContext(self.card, transform, self.class_names))


# ----------------------------------------------------------------------------- asking for a card


@dataclass(frozen=True)
class CardRequest:
    """What the user asked: a whole card (replaces any found), and/or fields to change on it."""

    card: ModelCard | None = None
    overrides: tuple[tuple[str, object], ...] = ()
    source: str = ""  # where the card came from, for the one-line report

    def apply(self, found: ModelCard | None) -> ModelCard | None:
        """The card to use, given the one found with the model (None: no card at all)."""
        base = self.card or found
        if not self.overrides:
            return base
        return (base or ModelCard()).merged(dict(self.overrides))

    def __bool__(self) -> bool:
        return self.card is not None or bool(self.overrides)


def card_request(card: str | Path | dict | ModelCard | CardRequest | None) -> CardRequest:
    """A ``CardRequest`` from a card file path, a ``ModelCard``, or a dict of card fields.

    A dict with a ``decoder`` is a whole card; without one, it changes fields of the card
    found with the model (beside it, inside it, or recognised).

    >>> card_request({"score_threshold": 0.5}).apply(ModelCard(decoder="yolov8")).score_threshold
    0.5
    """
    if card is None:
        return CardRequest()
    if isinstance(card, CardRequest):
        return card
    if isinstance(card, ModelCard):
        return CardRequest(card, source="the given card")
    if isinstance(card, dict):
        values = {k: v for k, v in card.items() if v is not None}
        if "decoder" in values:
            return CardRequest(card_from_dict(values, "the given options"), source="the given options")
        ModelCard().merged(values)  # checks the fields now, with the same sentences
        return CardRequest(overrides=tuple(values.items()), source="the given options")
    return CardRequest(read_card(Path(card)), source=str(card))
