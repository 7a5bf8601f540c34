"""The zoo entry of the openpose family: pinned sources, licence, files and wiring."""

from __future__ import annotations

from edgevision.models.openpose import (
    OUTPUT_NAMES,
    OpenPoseProcessor,
    build_openpose,
    he_scaled_init,
    load_openpose_checkpoint,
)
from edgevision.zoo.registry import register_model
from edgevision.zoo.spec import ModelSpec, Weights

register_model(
    ModelSpec(
        name="openpose-body",
        task="pose",
        family="openpose",
        input_size=(368, 368),
        license=(
            "CMU OpenPose licence: non-commercial research use only (academic or non-profit); "
            "commercial use needs a licence from Carnegie Mellon University"
        ),
        summary=(
            "OpenPose body, COCO 18 keypoints, VGG-19 front end + 6 stages of PAFs (38) and heatmaps (19), "
            "stride 8, 52.3 M parameters; built in PyTorch, weights user-supplied."
        ),
        preprocessing="resize keeping aspect, pad right/bottom with 128 to 368x368, BGR / 256 - 0.5, NCHW float32",
        artifacts=(),
        homepage="https://github.com/CMU-Perceptual-Computing-Lab/openpose",
        build=build_openpose,
        processor=OpenPoseProcessor,
        weights=Weights(
            filename="body_pose_model.pth",
            url="https://drive.google.com/drive/folders/1JsvI4M4ZTg98fmnCZLFM-3TeovnCRElG "
            "(also https://www.dropbox.com/sh/7xbup2qsn7vvjxo/AABWFksdlgOMXR_r5v3RwKRYa?dl=0), "
            "from https://github.com/Hzzone/pytorch-openpose",
            layout="flat state dict of Caffe layer names (conv1_1.weight, ..., Mconv7_stage6_L2.bias)",
        ),
        load_weights=load_openpose_checkpoint,
        random_init=he_scaled_init,
        output_names=OUTPUT_NAMES,
        flops_input=(1, 3, 368, 368),
    )
)
