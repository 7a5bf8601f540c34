"""What a model family provides: pre-processing and decoding, and the predictor interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Protocol

import numpy as np

from edgevision.models.transforms import ImageTransform
from edgevision.types import Prediction


class Predictor(ABC):
    """Maps one BGR ``uint8`` image to ``Detections``, ``Poses`` or ``RawOutputs``.

    ``backends`` are the runtimes it runs (``edgevision.backends.Backend``), first the main one.
    """

    task: str = "raw"
    backends: tuple = ()
    random_weights: bool = False  # True when the network holds random values: outputs are not real
    decoding: str = ""  # one line: how a model file is fed and decoded (card, recognised format, raw)

    @abstractmethod
    def __call__(self, image: np.ndarray) -> Prediction:
        """Predict on one image (H, W, 3) BGR uint8."""

    @property
    def class_names(self) -> tuple[str, ...]:
        """The classes it finds: its decoder's names, ``("person",)`` for poses, empty when unknown."""
        if self.task == "pose":
            return ("person",)
        return tuple(getattr(getattr(self, "processor", None), "class_names", ()))


class Processor(Protocol):
    """Pre-processing and decoding of one single-stage model family."""

    task: str

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, ImageTransform]:
        """The model's input tensor for ``image`` and the transform that made it."""

    def decode(self, outputs: dict[str, np.ndarray], transform: ImageTransform) -> Prediction:
        """Objects in source-image pixels from the raw outputs."""
