"""Models with no known family: feed an image to the first input, report the raw outputs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgevision.models.transforms import ImageTransform, resize
from edgevision.types import RawOutputs, TensorSpec

DEFAULT_SIDE = 224  # for dynamic spatial dimensions


@dataclass
class RawImageProcessor:
    """Resize to the input's size, BGR -> RGB, /255 for float inputs, NCHW or NHWC.

    >>> p = RawImageProcessor.for_input(TensorSpec("x", (1, 3, 32, 48), "float32"))
    >>> p.preprocess(np.zeros((10, 10, 3), np.uint8))[0].shape
    (1, 3, 32, 48)
    """

    size: tuple[int, int]  # (width, height)
    nchw: bool
    dtype: str = "float32"
    task = "raw"

    @classmethod
    def for_input(cls, spec: TensorSpec) -> RawImageProcessor | None:
        """The processor for an image input ``spec``; None when it is not an image (4-D, 3 channels)."""
        shape = [d or 1 for d in spec.shape]
        if len(shape) != 4 or 3 not in (shape[1], shape[3]):
            return None
        nchw = shape[1] == 3 and shape[3] != 3
        h, w = (shape[2], shape[3]) if nchw else (shape[1], shape[2])
        return cls((w if w > 1 else DEFAULT_SIDE, h if h > 1 else DEFAULT_SIDE), nchw, spec.dtype)

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, ImageTransform]:
        resized, transform = resize(image, self.size)
        x = resized[..., ::-1].astype(self.dtype) / (255.0 if np.dtype(self.dtype).kind == "f" else 1)
        x = x.transpose(2, 0, 1)[None] if self.nchw else x[None]
        return np.ascontiguousarray(x, dtype=self.dtype), transform

    def decode(self, outputs: dict[str, np.ndarray], transform: ImageTransform) -> RawOutputs:
        return RawOutputs(outputs)


@dataclass
class RawOutputsOf:
    """A family processor's pre-processing without its decoding (agreement by output cosine)."""

    inner: object
    task = "raw"

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, ImageTransform]:
        return self.inner.preprocess(image)

    def decode(self, outputs: dict[str, np.ndarray], transform: ImageTransform) -> RawOutputs:
        return RawOutputs(outputs)
