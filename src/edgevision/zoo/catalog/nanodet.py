"""The zoo entry of the nanodet family: pinned sources, licence, files and wiring."""

from __future__ import annotations

from functools import partial

from edgevision.models.nanodet import NanoDetProcessor
from edgevision.zoo.catalog.human_models import (
    ONNX_FILE,
    artifact,
    convert_tfjs,
    onnx_predictor,
)
from edgevision.zoo.registry import register_model
from edgevision.zoo.spec import ModelSpec

register_model(
    ModelSpec(
        name="nanodet-m",
        task="detection",
        family="nanodet",
        input_size=(416, 416),
        license="Apache-2.0",
        summary=(
            "NanoDet 416x416, COCO 80 classes, GFL head (reg_max 10), from the TF.js export in human-models "
            "(3.8 M parameters, plain convs and LeakyReLU: its layout matches NanoDet-g more than NanoDet-m)."
        ),
        preprocessing="stretch to 416x416, BGR, (x - mean) / std with NanoDet's mean/std, NCHW float32",
        artifacts=(
            artifact("nanodet.json", "4495eb0ec74bd33ee40a79aa06ebc1ccd7e28be1bf7355d93ffb570b8d77f45d"),
            artifact("nanodet.bin", "5d0e4f8c4eded666287330be03017d494787d35f523fd77ca23f59db984a4ad9"),
        ),
        predictor=onnx_predictor,
        processor=partial(NanoDetProcessor, input_size=(416, 416)),
        prepare=partial(convert_tfjs, "nanodet.json"),
        files={"onnx": ONNX_FILE},
        needs_extra="convert",
        homepage="https://github.com/RangiLyu/nanodet",
    )
)
