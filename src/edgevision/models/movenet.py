"""MoveNet: single-pose (Lightning 192, Thunder 256) and multi-pose Lightning, COCO-17 keypoints.

>>> from edgevision.zoo import get_spec
>>> get_spec("movenet-thunder").input_size
(256, 256)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from edgevision.errors import EdgevisionError
from edgevision.models.coco import COCO17_EDGES, COCO17_KEYPOINTS
from edgevision.models.transforms import ImageTransform, letterbox
from edgevision.types import Poses

logger = logging.getLogger(__name__)

KEYPOINTS = len(COCO17_KEYPOINTS)
MULTIPOSE_WIDTH = KEYPOINTS * 3 + 5  # 17 x (y, x, score), then ymin, xmin, ymax, xmax, score


@dataclass
class MoveNetProcessor:
    """Pre-processing and decoding of MoveNet's int32 RGB NHWC input and normalised outputs.

    The image is fitted inside the input keeping its aspect ratio and padded with zeros
    (``tf.image.resize_with_pad``, as MoveNet expects). With ``multiple_of`` set (the
    multi-pose model takes any size that is a multiple of it), the input's long side is
    ``input_size`` and the short side is rounded up to that multiple instead of padded square.
    Outputs are told apart by shape: ``(1, 1, 17, 3)`` single pose, ``(1, N, 56)`` multi-pose.
    """

    input_size: tuple[int, int] = (192, 192)  # (width, height); the long side with multiple_of
    multiple_of: int | None = None
    score_threshold: float = 0.2  # a person's score: mean keypoint score, or the model's own
    task = "pose"

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, ImageTransform]:
        """Letterbox (zero padding) to the input size, RGB int32 ``(1, H, W, 3)``."""
        padded, transform = letterbox(image, self.target_size(image.shape[1], image.shape[0]), pad_value=0)
        return np.ascontiguousarray(padded[None, ..., ::-1], dtype=np.int32), transform

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """Input (width, height) for an image: fixed, or long side fixed and a multiple of ``multiple_of``.

        A very thin image (10 x 10000 px) still gets one ``multiple_of`` on its short side:
        the image is letterboxed into it, never squeezed to nothing.

        >>> MoveNetProcessor((256, 256), multiple_of=32).target_size(10, 10000)
        (32, 256)
        """
        if self.multiple_of is None:
            return self.input_size
        scale = max(self.input_size) / max(width, height)
        step = self.multiple_of
        return tuple(max(step, -(-round(side * scale) // step) * step) for side in (width, height))

    def decode(self, outputs: dict[str, np.ndarray], transform: ImageTransform) -> Poses:
        """People in source pixels; below ``score_threshold`` they are dropped."""
        if len(outputs) != 1:
            raise EdgevisionError(f"MoveNet has one output, this model has {len(outputs)}: {sorted(outputs)}.")
        raw = next(iter(outputs.values()))
        input_size = self.target_size(*transform.source_size)
        if raw.shape[-2:] == (KEYPOINTS, 3):
            return decode_single_pose(raw, transform, input_size, self.score_threshold)
        if raw.shape[-1] == MULTIPOSE_WIDTH:
            return decode_multi_pose(raw, transform, input_size, self.score_threshold)
        raise EdgevisionError(f"output of shape {raw.shape} is not a MoveNet output ([1,1,17,3] or [1,N,56]).")


def keypoints_to_source(yxs: np.ndarray, transform: ImageTransform, input_size: tuple[int, int]) -> np.ndarray:
    """(..., 17, 3) normalised (y, x, score) to (..., 17, 3) source-pixel (x, y, score)."""
    xy = np.stack([yxs[..., 1] * input_size[0], yxs[..., 0] * input_size[1]], axis=-1)
    return np.concatenate([transform.points_to_source(xy), yxs[..., 2:3]], axis=-1).astype(np.float32)


def decode_single_pose(
    raw: np.ndarray, transform: ImageTransform, input_size: tuple[int, int], threshold: float
) -> Poses:
    """One person from a ``(1, 1, 17, 3)`` output, scored by the mean keypoint score."""
    keypoints = keypoints_to_source(raw.reshape(1, KEYPOINTS, 3), transform, input_size)
    scores = keypoints[:, :, 2].mean(axis=1)
    poses = Poses(keypoints, scores, COCO17_KEYPOINTS, COCO17_EDGES)
    return poses[scores >= threshold]


def decode_multi_pose(
    raw: np.ndarray, transform: ImageTransform, input_size: tuple[int, int], threshold: float
) -> Poses:
    """People from a ``(1, N, 56)`` output whose own score reaches ``threshold``, best first."""
    rows = raw.reshape(-1, MULTIPOSE_WIDTH)
    rows = rows[rows[:, -1] >= threshold]
    rows = rows[np.argsort(-rows[:, -1], kind="stable")]
    keypoints = keypoints_to_source(rows[:, : KEYPOINTS * 3].reshape(-1, KEYPOINTS, 3), transform, input_size)
    ymin, xmin, ymax, xmax = rows[:, -5:-1].T
    corners = np.stack([xmin * input_size[0], ymin * input_size[1], xmax * input_size[0], ymax * input_size[1]], 1)
    boxes = transform.boxes_to_source(corners)
    return Poses(keypoints, rows[:, -1], COCO17_KEYPOINTS, COCO17_EDGES, boxes)
