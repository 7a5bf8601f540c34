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
    multi-pose model takes any size that is a multiple of it), the input's long side follows
    the frame's: its long side rounded up to that multiple, kept between ``min_long_side`` and
    ``input_size``, and the short side is rounded up to that multiple instead of padded square.
    A small frame is thus not blown up to ``input_size``: a close person upscaled that much is
    no longer found.
    Outputs are told apart by shape: ``(1, 1, 17, 3)`` single pose, ``(1, N, 56)`` multi-pose.
    """

    input_size: tuple[int, int] = (192, 192)  # (width, height); the long side with multiple_of
    multiple_of: int | None = None
    min_long_side: int = 256  # with multiple_of: smaller inputs miss the small people of a small frame
    score_threshold: float = 0.2  # a person's score: mean keypoint score, or the model's own
    min_extent: float = 0.08  # single pose: a skeleton spanning less of the input side scores 0
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
        >>> MoveNetProcessor((448, 448), multiple_of=32).target_size(300, 200)
        (320, 224)
        """
        if self.multiple_of is None:
            return self.input_size
        scale = self.long_side(max(width, height)) / max(width, height)
        return tuple(_round_up(side * scale, self.multiple_of) for side in (width, height))

    def long_side(self, frame_long_side: int) -> int:
        """The input's long side: the frame's rounded up to ``multiple_of``, within the limits.

        >>> [MoveNetProcessor((448, 448), multiple_of=32).long_side(s) for s in (176, 300, 768)]
        [256, 320, 448]
        """
        largest = max(self.input_size)
        return min(largest, max(min(self.min_long_side, largest), _round_up(frame_long_side, self.multiple_of)))

    def decode(self, outputs: dict[str, np.ndarray], transform: ImageTransform) -> Poses:
        """People in source pixels; below ``score_threshold`` they are dropped."""
        if len(outputs) != 1:
            raise EdgevisionError(f"MoveNet has one output, this model has {len(outputs)}: {sorted(outputs)}.")
        raw = next(iter(outputs.values()))
        input_size = self.target_size(*transform.source_size)
        if raw.shape[-2:] == (KEYPOINTS, 3):
            poses = decode_single_pose(raw, transform, input_size, min_extent=self.min_extent)
            return poses[poses.scores >= self.score_threshold]
        if raw.shape[-1] == MULTIPOSE_WIDTH:
            return decode_multi_pose(raw, transform, input_size, self.score_threshold)
        raise EdgevisionError(f"output of shape {raw.shape} is not a MoveNet output ([1,1,17,3] or [1,N,56]).")


def _round_up(value: float, step: int) -> int:
    """``value`` rounded up to a multiple of ``step``, at least ``step``."""
    return max(step, -(-round(value) // step) * step)


def keypoints_to_source(yxs: np.ndarray, transform: ImageTransform, input_size: tuple[int, int]) -> np.ndarray:
    """(..., 17, 3) normalised (y, x, score) to (..., 17, 3) source-pixel (x, y, score)."""
    xy = np.stack([yxs[..., 1] * input_size[0], yxs[..., 0] * input_size[1]], axis=-1)
    return np.concatenate([transform.points_to_source(xy), yxs[..., 2:3]], axis=-1).astype(np.float32)


def single_pose_score(raw: np.ndarray, *, min_extent: float, visible: float = 0.2) -> np.ndarray:
    """The person's score, shape (1,): the mean keypoint score, 0 when the skeleton is folded into a spot.

    The single-pose models always place 17 keypoints. On an image without a person (a dog)
    their scores stay near a real person's (0.3-0.4), but the keypoints above ``visible``
    gather within a few hundredths of the input side, where a person spans a tenth or more.

    >>> raw = np.zeros((1, 1, 17, 3), np.float32); raw[..., 2] = 0.5
    >>> single_pose_score(raw, min_extent=0.08)
    array([0.], dtype=float32)
    >>> raw[0, 0, :, 0] = np.linspace(0.2, 0.8, 17)
    >>> single_pose_score(raw, min_extent=0.08)
    array([0.5], dtype=float32)
    """
    yxs = raw.reshape(KEYPOINTS, 3)
    seen = yxs[yxs[:, 2] >= visible, :2]
    extent = float((seen.max(axis=0) - seen.min(axis=0)).max()) if len(seen) > 1 else 0.0
    return np.array([yxs[:, 2].mean() if extent >= min_extent else 0.0], np.float32)


def decode_single_pose(
    raw: np.ndarray, transform: ImageTransform, input_size: tuple[int, int], *, min_extent: float
) -> Poses:
    """One person from a ``(1, 1, 17, 3)`` output, scored by :func:`single_pose_score`."""
    keypoints = keypoints_to_source(raw.reshape(1, KEYPOINTS, 3), transform, input_size)
    return Poses(keypoints, single_pose_score(raw, min_extent=min_extent), COCO17_KEYPOINTS, COCO17_EDGES)


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
