"""What a model family provides: an image in, a prediction out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Protocol

import numpy as np

from edgevision.backends import Backend
from edgevision.models.transforms import ImageTransform
from edgevision.types import Prediction, RawOutputs


class Predictor(ABC):
    """Maps one BGR ``uint8`` image to ``Detections``, ``Poses`` or ``RawOutputs``."""

    task: str = "raw"
    backends: tuple[Backend, ...] = ()
    random_weights: bool = False  # True when the network holds random values: outputs are not real

    @abstractmethod
    def __call__(self, image: np.ndarray) -> Prediction:
        """Predict on one image (H, W, 3) BGR uint8."""


class Processor(Protocol):
    """Pre-processing and decoding of one single-stage model family."""

    task: str

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, ImageTransform]:
        """The model's input tensor for ``image`` and the transform that made it."""

    def decode(self, outputs: dict[str, np.ndarray], transform: ImageTransform) -> Prediction:
        """Objects in source-image pixels from the raw outputs."""


class SingleStagePredictor(Predictor):
    """One model on one backend: pre-process, run, decode."""

    def __init__(self, backend: Backend, processor: Processor) -> None:
        self.backend = backend
        self.backends = (backend,)
        self.processor = processor
        self.task = processor.task
        self._input = backend.inputs[0].name

    def __call__(self, image: np.ndarray) -> Prediction:
        tensor, transform = self.processor.preprocess(image)
        outputs = self.backend.run({self._input: tensor})
        return self.processor.decode(outputs, transform)


class RawPredictor(Predictor):
    """A model file with no known decoder: fit the image to its first input, report outputs."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.backends = (backend,)
        self._prepare: Callable[[np.ndarray], dict[str, np.ndarray]] = _guess_input(backend)

    def __call__(self, image: np.ndarray) -> RawOutputs:
        return RawOutputs(self.backend.run(self._prepare(image)))


def _guess_input(backend: Backend) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """Resize an image to the first input's NCHW or NHWC shape; zeros for other inputs."""
    import cv2

    from edgevision.errors import EdgevisionError

    spec = backend.inputs[0]
    shape = [d or 1 for d in spec.shape]
    if len(shape) != 4 or 3 not in (shape[1], shape[3]):
        raise EdgevisionError(
            f"{backend.path.name} has no known decoder and its input {spec.name} {spec.shape} is not an image."
        )
    nchw = shape[1] == 3 and shape[3] != 3
    h, w = (shape[2], shape[3]) if nchw else (shape[1], shape[2])
    h, w = h if h > 1 else 224, w if w > 1 else 224
    floating = np.dtype(spec.dtype).kind == "f"

    def prepare(image: np.ndarray) -> dict[str, np.ndarray]:
        rgb = cv2.cvtColor(cv2.resize(image, (w, h)), cv2.COLOR_BGR2RGB)
        x = rgb.astype(spec.dtype) / (255.0 if floating else 1)
        x = x.transpose(2, 0, 1)[None] if nchw else x[None]
        feeds = {spec.name: np.ascontiguousarray(x, dtype=spec.dtype)}
        for other in backend.inputs[1:]:
            feeds[other.name] = np.zeros([d or 1 for d in other.shape], dtype=other.dtype)
        return feeds

    return prepare
