"""Image-to-tensor geometry: resize and letterbox, and the way back to source pixels."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class ImageTransform:
    """Maps model-input pixels back to source-image pixels: ``src = (dst - pad) / scale``."""

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    source_size: tuple[int, int]  # (width, height) of the source image
    input_size: tuple[int, int] | None = None  # (width, height) of the model input it made

    def points_to_source(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) model-pixel points to source pixels (not clipped)."""
        xy = np.asarray(xy, dtype=np.float32)
        out = np.empty_like(xy)
        out[..., 0] = (xy[..., 0] - self.pad_x) / self.scale_x
        out[..., 1] = (xy[..., 1] - self.pad_y) / self.scale_y
        return out

    def boxes_to_source(self, xyxy: np.ndarray) -> np.ndarray:
        """(N, 4) model-pixel boxes to source pixels, clipped to the image."""
        boxes = self.points_to_source(np.asarray(xyxy, dtype=np.float32).reshape(-1, 2, 2)).reshape(-1, 4)
        w, h = self.source_size
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        return boxes


def resize(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, ImageTransform]:
    """Stretch ``image`` to ``size`` (width, height), ignoring aspect ratio."""
    h, w = image.shape[:2]
    out = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    return out, ImageTransform(size[0] / w, size[1] / h, 0.0, 0.0, (w, h), tuple(size))


def letterbox(
    image: np.ndarray, size: tuple[int, int], *, pad_value: int = 114, center: bool = True
) -> tuple[np.ndarray, ImageTransform]:
    """Fit ``image`` inside ``size`` keeping its aspect ratio; pad the rest with ``pad_value``.

    ``center=False`` puts the image in the top-left corner (YOLOX's convention).
    """
    h, w = image.shape[:2]
    scale = min(size[0] / w, size[1] / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    canvas = np.full((size[1], size[0], image.shape[2]), pad_value, dtype=image.dtype)
    px, py = ((size[0] - nw) // 2, (size[1] - nh) // 2) if center else (0, 0)
    canvas[py : py + nh, px : px + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return canvas, ImageTransform(nw / w, nh / h, float(px), float(py), (w, h), tuple(size))


def to_tensor(
    image: np.ndarray,
    *,
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0),
    std: tuple[float, float, float] | None = None,
    swap_rb: bool = False,
    nchw: bool = True,
) -> np.ndarray:
    """``(image - mean) / std`` per channel as a float32 batch of one, ``(1, C, H, W)`` or
    ``(1, H, W, C)``; ``swap_rb`` makes BGR RGB first (``mean`` and ``std`` are then in RGB order).

    The cast, the swap, the subtraction and the layout are one pass in OpenCV's
    ``blobFromImageWithParams`` (written by hand in numpy they are four passes and four
    arrays), and the division one more in place. The values are bit for bit those of
    ``(image.astype(np.float32) - mean) / std`` with float32 ``mean`` and ``std``, so
    calibration and parity do not move. Images of another dtype (a float image handed to a
    predictor from Python) take that numpy formula itself.

    >>> image = np.array([[[10, 20, 30]]], np.uint8)  # one BGR pixel
    >>> to_tensor(image, mean=(1, 2, 3), std=(1, 2, 4)).ravel().tolist()
    [9.0, 9.0, 6.75]
    >>> to_tensor(image, swap_rb=True, nchw=False).tolist()
    [[[[30.0, 20.0, 10.0]]]]
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a 3-channel (H, W, 3) image, got shape {image.shape}")
    divisor = None if std is None else np.asarray(std, np.float32)
    if image.dtype != np.uint8:
        x = (image[..., ::-1] if swap_rb else image).astype(np.float32) - np.asarray(mean, np.float32)
        x = x if divisor is None else x / divisor
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None] if nchw else x[None])
    params = cv2.dnn.Image2BlobParams()
    params.mean = (*(float(np.float32(m)) for m in mean), 0.0)
    params.size = (image.shape[1], image.shape[0])
    params.swapRB = swap_rb
    params.ddepth = cv2.CV_32F
    params.datalayout = _layout("NCHW" if nchw else "NHWC")
    blob = cv2.dnn.blobFromImageWithParams(image, params)
    if divisor is not None:
        np.divide(blob, divisor.reshape((1, 3, 1, 1) if nchw else (1, 1, 1, 3)), out=blob)
    return blob


def _layout(name: str) -> int:
    """OpenCV's ``DNN_LAYOUT_<name>``: in ``cv2.dnn`` up to 4.x, in ``cv2`` itself from 5.0."""
    key = f"DNN_LAYOUT_{name}"
    return getattr(cv2, key) if hasattr(cv2, key) else getattr(cv2.dnn, key)
