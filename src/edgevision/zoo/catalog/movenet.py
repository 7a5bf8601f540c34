"""The zoo entries of the movenet family: pinned sources, licence, files and wiring."""

from __future__ import annotations

from functools import partial

from edgevision.models.movenet import MoveNetProcessor
from edgevision.zoo.catalog.human_models import (
    ONNX_FILE,
    artifact,
    convert_tfjs,
    onnx_predictor,
)
from edgevision.zoo.registry import register_model
from edgevision.zoo.spec import ModelSpec


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
            predictor=onnx_predictor,
            processor=partial(
                MoveNetProcessor, input_size=(size, size), multiple_of=32 if "multipose" in name else None
            ),
            prepare=partial(convert_tfjs, f"{name}.json"),
            files={"onnx": ONNX_FILE},
            needs_extra="convert",
            homepage="https://www.tensorflow.org/hub/tutorials/movenet",
        )
    )


_SQUARE = "letterbox to {0}x{0} with zero padding, RGB, int32 0-255, NHWC"
_register(
    "movenet-lightning",
    192,
    "MoveNet SinglePose Lightning v4: one person, 17 COCO keypoints, fastest.",
    "df8cbde44d00f533ccc4916a7c6ebc17316532fb3fadad114ec667fef22872e9",
    "bf97bc10d9c8a11200b0190ed64ce039b6252f1aff7cb552aca99b3d191c2f34",
    _SQUARE.format(192),
)
_register(
    "movenet-thunder",
    256,
    "MoveNet SinglePose Thunder v4: one person, 17 COCO keypoints, more accurate.",
    "7ac4e2a8449fc279f71b8b0ba52f7c5daafc124ce9b6bf7549289ca432e342b6",
    "a2925747fccaf737c0f20eacdeff919efd5d514e90242397002a0de349dff18c",
    _SQUARE.format(256),
)
_register(
    "movenet-multipose",
    448,
    "MoveNet MultiPose Lightning v1: up to 6 people with boxes, 17 COCO keypoints.",
    "3c76e18669efc50148b28d0be97db491dc055cb2be292d248ec129031c5aa5de",
    "19828492d4a69c2e08915916c70f4d22c421c3b59152dfa5601834fc54f54118",
    "long side the frame's rounded up to a multiple of 32, between 256 and 448 (448 finds distant "
    "people, a small frame upscaled to 448 loses a close one), short side rounded up to a multiple "
    "of 32, zero padding, RGB, int32 0-255, NHWC",
)
