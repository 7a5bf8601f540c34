"""Models with no known family: feed an image to the first input, report the raw outputs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgevision.errors import EdgevisionError
from edgevision.models.card import CardProcessor, ModelCard, resolve_card
from edgevision.models.transforms import ImageTransform
from edgevision.types import RawOutputs, TensorSpec


def raw_processor(spec: TensorSpec) -> CardProcessor | None:
    """The default fitting of an image to input ``spec``: the ``raw`` decoder's card.

    Stretch to the input's size (224 for dynamic sides), BGR -> RGB, /255 for float inputs,
    NCHW or NHWC as the shape says. None when the input is not an image (4-D, 3 channels).

    >>> p = raw_processor(TensorSpec("x", (1, 3, 32, 48), "float32"))
    >>> p.preprocess(np.zeros((10, 10, 3), np.uint8))[0].shape
    (1, 3, 32, 48)
    """
    try:
        return CardProcessor(resolve_card(ModelCard(decoder="raw"), spec))
    except EdgevisionError:
        return None


@dataclass
class RawOutputsOf:
    """A family processor's pre-processing without its decoding (agreement by output cosine)."""

    inner: object
    task = "raw"

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, ImageTransform]:
        return self.inner.preprocess(image)

    def decode(self, outputs: dict[str, np.ndarray], transform: ImageTransform) -> RawOutputs:
        return RawOutputs(outputs)
