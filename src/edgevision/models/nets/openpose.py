"""OpenPose body (COCO 18 keypoints, CVPR 2017) in PyTorch.

Layer names follow the Caffe model (``pose_iter_440000.caffemodel``) as converted by the
widely used PyTorch port (``body_pose_model.pth``): a VGG-19 front end ``model0``, then six
stages, each with a PAF branch ``model{s}_1`` (38 channels) and a heatmap branch
``model{s}_2`` (19 channels: 18 parts + background). Module keys carry the block prefix
(``model0.conv1_1.weight``); the port's checkpoint file has the bare layer names.

The last heatmap conv (``Mconv7_stage6_L2``) has no ReLU, as in the Caffe model; the
port's module adds one there (a duplicated name in its no-ReLU list), which only clips
negative heatmap values and does not change decoded people.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

PAF_CHANNELS = 38
HEATMAP_CHANNELS = 19
FRONT_CHANNELS = 128
STAGES = 6

# (name, in, out, kernel) of the front end; "pool" entries are 2x2 stride-2 max-pools.
_FRONT = (
    ("conv1_1", 3, 64, 3),
    ("conv1_2", 64, 64, 3),
    ("pool1_stage1",),
    ("conv2_1", 64, 128, 3),
    ("conv2_2", 128, 128, 3),
    ("pool2_stage1",),
    ("conv3_1", 128, 256, 3),
    ("conv3_2", 256, 256, 3),
    ("conv3_3", 256, 256, 3),
    ("conv3_4", 256, 256, 3),
    ("pool3_stage1",),
    ("conv4_1", 256, 512, 3),
    ("conv4_2", 512, 512, 3),
    ("conv4_3_CPM", 512, 256, 3),
    ("conv4_4_CPM", 256, 128, 3),
)


def _layers(spec, *, relu_last: bool = False) -> nn.Sequential:
    """Convs with "same" padding, each followed by ReLU except a branch's last (its output)."""
    layers: list[tuple[str, nn.Module]] = []
    for i, entry in enumerate(spec):
        if len(entry) == 1:
            layers.append((entry[0], nn.MaxPool2d(2, 2)))
            continue
        name, c_in, c_out, k = entry
        layers.append((name, nn.Conv2d(c_in, c_out, k, 1, k // 2)))
        if i < len(spec) - 1 or relu_last:
            layers.append((f"relu_{name}", nn.ReLU(inplace=True)))
    return nn.Sequential(OrderedDict(layers))


def stage_spec(stage: int, branch: int, c_out: int):
    """Layer specs of ``stage`` (1..6), ``branch`` 1 (PAFs) or 2 (heatmaps)."""
    if stage == 1:
        name = "conv5_{}_CPM_L" + str(branch)
        return (
            (name.format(1), 128, 128, 3),
            (name.format(2), 128, 128, 3),
            (name.format(3), 128, 128, 3),
            (name.format(4), 128, 512, 1),
            (name.format(5), 512, c_out, 1),
        )
    c_in = PAF_CHANNELS + HEATMAP_CHANNELS + FRONT_CHANNELS
    name = "Mconv{}_stage" + f"{stage}_L{branch}"
    sizes = [(c_in, 128, 7)] + [(128, 128, 7)] * 4 + [(128, 128, 1), (128, c_out, 1)]
    return tuple((name.format(i + 1), *size) for i, size in enumerate(sizes))


class OpenPoseBody(nn.Module):
    """VGG-19 front end and six two-branch stages; stride 8.

    ``forward(images)`` takes ``[B, 3, H, W]`` (BGR / 256 - 0.5, H and W multiples of 8) and
    returns ``(pafs [B, 38, H/8, W/8], heatmaps [B, 19, H/8, W/8])`` of the last stage.
    """

    def __init__(self) -> None:
        super().__init__()
        self.model0 = _layers(_FRONT, relu_last=True)
        # All PAF branches first, then all heatmap branches: the port's key order.
        for branch, channels in ((1, PAF_CHANNELS), (2, HEATMAP_CHANNELS)):
            for stage in range(1, STAGES + 1):
                setattr(self, f"model{stage}_{branch}", _layers(stage_spec(stage, branch, channels)))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.model0(images)
        x = features
        for stage in range(1, STAGES + 1):
            pafs = getattr(self, f"model{stage}_1")(x)
            heatmaps = getattr(self, f"model{stage}_2")(x)
            x = torch.cat([pafs, heatmaps, features], dim=1)
        return pafs, heatmaps
