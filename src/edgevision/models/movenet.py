"""MoveNet: single-pose (Lightning 192, Thunder 256) and multi-pose Lightning, COCO-17 keypoints.

>>> from edgevision.zoo import get_spec
>>> get_spec("movenet-thunder").input_size
(256, 256)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from edgevision.errors import EdgevisionError
from edgevision.models.base import Predictor, SingleStagePredictor
from edgevision.models.coco import COCO17_EDGES, COCO17_KEYPOINTS
from edgevision.models.human_models import (
    ONNX_FILE,
    artifact,
    convert_tfjs,
    onnx_runtime_for,
)
from edgevision.models.transforms import ImageTransform, letterbox
from edgevision.types import Poses
from edgevision.zoo import register_model
from edgevision.zoo.spec import ModelSpec

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
        """Input (width, height) for an image: fixed, or long side fixed and a multiple of ``multiple_of``."""
        if self.multiple_of is None:
            return self.input_size
        scale = max(self.input_size) / max(width, height)
        step = self.multiple_of
        return (-(-round(width * scale) // step) * step, -(-round(height * scale) // step) * step)

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


# ----------------------------------------------------------------------------- zoo entries


def predictor(spec: ModelSpec, folder: Path, backend: str | None = None, threads: int | None = None) -> Predictor:
    """MoveNet on ONNX Runtime (default) or OpenVINO, both reading ``model.onnx``."""
    from edgevision.backends import create_backend

    runtime = onnx_runtime_for(spec.name, backend)
    return SingleStagePredictor(create_backend(runtime, folder / spec.files["onnx"], threads=threads), spec.processor())


def _register(name: str, size: int, summary: str, json_sha: str, bin_sha: str, preprocessing: str) -> None:
    register_model(
        ModelSpec(
            name=name,
            task="pose",
            family="movenet",
            input_size=(size, size),
            license="Apache-2.0",
            summary=summary,
            preprocessing=preprocessing,
            artifacts=(artifact(f"{name}.json", json_sha), artifact(f"{name}.bin", bin_sha)),
            predictor=predictor,
            processor=partial(MoveNetProcessor, input_size=(size, size), multiple_of=32 if "multipose" in name else None),
            prepare=partial(convert_tfjs, f"{name}.json"),
            files={"onnx": ONNX_FILE},
            needs_extra="convert",
            homepage="https://www.tensorflow.org/hub/tutorials/movenet",
        )
    )


_SQUARE = "letterbox to {0}x{0} with zero padding, RGB, int32 0-255, NHWC"
_register(
    "movenet-lightning", 192, "MoveNet SinglePose Lightning v4: one person, 17 COCO keypoints, fastest.",
    "df8cbde44d00f533ccc4916a7c6ebc17316532fb3fadad114ec667fef22872e9",
    "bf97bc10d9c8a11200b0190ed64ce039b6252f1aff7cb552aca99b3d191c2f34",
    _SQUARE.format(192),
)  # fmt: skip
_register(
    "movenet-thunder", 256, "MoveNet SinglePose Thunder v4: one person, 17 COCO keypoints, more accurate.",
    "7ac4e2a8449fc279f71b8b0ba52f7c5daafc124ce9b6bf7549289ca432e342b6",
    "a2925747fccaf737c0f20eacdeff919efd5d514e90242397002a0de349dff18c",
    _SQUARE.format(256),
)  # fmt: skip
_register(
    "movenet-multipose", 448, "MoveNet MultiPose Lightning v1: up to 6 people with boxes, 17 COCO keypoints.",
    "3c76e18669efc50148b28d0be97db491dc055cb2be292d248ec129031c5aa5de",
    "19828492d4a69c2e08915916c70f4d22c421c3b59152dfa5601834fc54f54118",
    "long side 448 (any multiple of 32 works; 256 misses distant people), short side rounded up "
    "to a multiple of 32, zero padding, RGB, int32 0-255, NHWC",
)  # fmt: skip
