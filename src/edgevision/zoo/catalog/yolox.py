"""The zoo entries of the yolox family: pinned sources, licence, files and wiring."""

from __future__ import annotations

from edgevision.models.yolox import (
    HOMEPAGE,
    OUTPUT_NAMES,
    RELEASE,
    VARIANTS,
    YoloxProcessor,
    YoloxVariant,
    build_yolox,
    load_yolox_checkpoint,
)
from edgevision.zoo.registry import register_model
from edgevision.zoo.spec import ModelSpec, Weights


def _register(variant: YoloxVariant) -> None:
    size = variant.input_size
    kind = "depthwise-separable " if variant.depthwise else ""
    register_model(
        ModelSpec(
            name=variant.name,
            task="detection",
            family="yolox",
            input_size=(size, size),
            license="Apache-2.0",
            summary=(
                f"YOLOX {variant.name.split('-')[1]} {size}x{size}, COCO 80 classes, {kind}CSPDarknet + PAFPN, "
                f"depth {variant.depth} width {variant.width}; built in PyTorch, official weights user-supplied."
            ),
            preprocessing=f"letterbox to {size}x{size} top-left, pad 114, BGR, float32 0..255, NCHW, no normalisation",
            artifacts=(),
            homepage=HOMEPAGE,
            build=lambda: build_yolox(variant.name),
            processor=lambda: YoloxProcessor(input_size=(size, size)),
            weights=Weights(
                filename=variant.filename,
                url=f"{RELEASE}/{variant.filename}",
                sha256=variant.sha256,
                layout="dict with a 'model' state dict",
            ),
            load_weights=load_yolox_checkpoint,
            output_names=OUTPUT_NAMES,
            flops_input=(1, 3, size, size),
        )
    )


for _variant_spec in VARIANTS.values():
    _register(_variant_spec)
