"""YOLOX (Megvii) in PyTorch, with the attribute names of the official implementation.

State-dict keys and shapes equal those of the official checkpoints (``yolox_nano.pth`` ...):
``backbone`` is the PAFPN neck holding the CSPDarknet as ``backbone.backbone``; ``head``
holds ``stems``, ``cls_convs``, ``reg_convs``, ``cls_preds``, ``reg_preds``, ``obj_preds``.

The inference forward differs from the official one on purpose: it returns decoded boxes
and class scores as two tensors instead of one concatenated ``[1, N, 85]`` tensor, since
a shared output collapses under full-int8 quantization.
"""

from __future__ import annotations

import torch
from torch import nn

# The official experiments set every BatchNorm to eps 1e-3 (``init_yolo`` in the Exp files).
BN_EPS = 1e-3


class ConvBnAct(nn.Module):
    """Conv2d (no bias) -> BatchNorm -> SiLU, "same" padding (official ``BaseConv``)."""

    def __init__(self, c_in: int, c_out: int, ksize: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, ksize, stride, (ksize - 1) // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=BN_EPS, momentum=0.03)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class DepthwiseConv(nn.Module):
    """Depthwise ``ksize`` conv then pointwise 1x1 conv, each with BN + SiLU (``DWConv``)."""

    def __init__(self, c_in: int, c_out: int, ksize: int, stride: int = 1) -> None:
        super().__init__()
        self.dconv = ConvBnAct(c_in, c_in, ksize, stride, groups=c_in)
        self.pconv = ConvBnAct(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pconv(self.dconv(x))


def conv_block(c_in: int, c_out: int, ksize: int, stride: int = 1, *, depthwise: bool) -> nn.Module:
    """The 3x3 conv of a variant: depthwise-separable for nano, plain otherwise."""
    kind = DepthwiseConv if depthwise else ConvBnAct
    return kind(c_in, c_out, ksize, stride)


class Bottleneck(nn.Module):
    """1x1 conv then 3x3 conv, with a residual add when shapes allow and ``shortcut``."""

    def __init__(self, channels: int, *, shortcut: bool, depthwise: bool) -> None:
        super().__init__()
        self.conv1 = ConvBnAct(channels, channels, 1)
        self.conv2 = conv_block(channels, channels, 3, depthwise=depthwise)
        self.use_add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        return y + x if self.use_add else y


class CSPLayer(nn.Module):
    """Cross-stage partial block (YOLOv5's C3): two 1x1 branches, ``n`` bottlenecks on one."""

    def __init__(self, c_in: int, c_out: int, n: int, *, shortcut: bool = True, depthwise: bool = False) -> None:
        super().__init__()
        hidden = int(c_out * 0.5)
        self.conv1 = ConvBnAct(c_in, hidden, 1)
        self.conv2 = ConvBnAct(c_in, hidden, 1)
        self.conv3 = ConvBnAct(2 * hidden, c_out, 1)
        self.m = nn.Sequential(*(Bottleneck(hidden, shortcut=shortcut, depthwise=depthwise) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(torch.cat((self.m(self.conv1(x)), self.conv2(x)), dim=1))


class SPPBottleneck(nn.Module):
    """Spatial pyramid pooling: 1x1 conv, max-pools of 5/9/13 concatenated, 1x1 conv."""

    def __init__(self, c_in: int, c_out: int, kernel_sizes: tuple[int, ...] = (5, 9, 13)) -> None:
        super().__init__()
        hidden = c_in // 2
        self.conv1 = ConvBnAct(c_in, hidden, 1)
        self.m = nn.ModuleList(nn.MaxPool2d(k, stride=1, padding=k // 2) for k in kernel_sizes)
        self.conv2 = ConvBnAct(hidden * (len(kernel_sizes) + 1), c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x] + [pool(x) for pool in self.m], dim=1))


class Focus(nn.Module):
    """Space-to-depth by 2 (four interleaved sub-images stacked on channels), then a conv."""

    def __init__(self, c_in: int, c_out: int, ksize: int) -> None:
        super().__init__()
        self.conv = ConvBnAct(c_in * 4, c_out, ksize)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = (x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2])
        return self.conv(torch.cat(parts, dim=1))


def _stage(c_in: int, c_out: int, depth: int, *, depthwise: bool) -> nn.Sequential:
    return nn.Sequential(
        conv_block(c_in, c_out, 3, 2, depthwise=depthwise),
        CSPLayer(c_out, c_out, depth, depthwise=depthwise),
    )


class CSPDarknet(nn.Module):
    """The backbone: Focus stem and four stride-2 stages; returns dark3, dark4, dark5."""

    def __init__(self, depth: float, width: float, *, depthwise: bool) -> None:
        super().__init__()
        c = int(width * 64)
        n = max(round(depth * 3), 1)
        self.stem = Focus(3, c, ksize=3)
        self.dark2 = _stage(c, c * 2, n, depthwise=depthwise)
        self.dark3 = _stage(c * 2, c * 4, n * 3, depthwise=depthwise)
        self.dark4 = _stage(c * 4, c * 8, n * 3, depthwise=depthwise)
        self.dark5 = nn.Sequential(
            conv_block(c * 8, c * 16, 3, 2, depthwise=depthwise),
            SPPBottleneck(c * 16, c * 16),
            CSPLayer(c * 16, c * 16, n, shortcut=False, depthwise=depthwise),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x3 = self.dark3(self.dark2(self.stem(x)))
        x4 = self.dark4(x3)
        return x3, x4, self.dark5(x4)


class YOLOPAFPN(nn.Module):
    """The neck: a top-down FPN then a bottom-up PAN over the backbone's three outputs."""

    def __init__(self, depth: float, width: float, *, depthwise: bool) -> None:
        super().__init__()
        c3, c4, c5 = (int(c * width) for c in (256, 512, 1024))
        n = round(3 * depth)
        self.backbone = CSPDarknet(depth, width, depthwise=depthwise)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.lateral_conv0 = ConvBnAct(c5, c4, 1)
        self.C3_p4 = CSPLayer(2 * c4, c4, n, shortcut=False, depthwise=depthwise)
        self.reduce_conv1 = ConvBnAct(c4, c3, 1)
        self.C3_p3 = CSPLayer(2 * c3, c3, n, shortcut=False, depthwise=depthwise)
        self.bu_conv2 = conv_block(c3, c3, 3, 2, depthwise=depthwise)
        self.C3_n3 = CSPLayer(2 * c3, c4, n, shortcut=False, depthwise=depthwise)
        self.bu_conv1 = conv_block(c4, c4, 3, 2, depthwise=depthwise)
        self.C3_n4 = CSPLayer(2 * c4, c5, n, shortcut=False, depthwise=depthwise)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x3, x4, x5 = self.backbone(x)
        top5 = self.lateral_conv0(x5)
        p4 = self.C3_p4(torch.cat([self.upsample(top5), x4], 1))
        top4 = self.reduce_conv1(p4)
        out3 = self.C3_p3(torch.cat([self.upsample(top4), x3], 1))
        out4 = self.C3_n3(torch.cat([self.bu_conv2(out3), top4], 1))
        out5 = self.C3_n4(torch.cat([self.bu_conv1(out4), top5], 1))
        return out3, out4, out5


def _branch(channels: int, *, depthwise: bool) -> nn.Sequential:
    return nn.Sequential(*(conv_block(channels, channels, 3, depthwise=depthwise) for _ in range(2)))


class YOLOXHead(nn.Module):
    """Decoupled anchor-free head; the forward decodes boxes on the grid of each stride.

    Returns ``boxes`` ``[B, N, 4]`` (xyxy, input pixels) and ``scores`` ``[B, N, classes]``
    (objectness x class probability), ``N`` = cells over strides 8, 16, 32, row-major.
    """

    def __init__(self, num_classes: int, width: float, *, depthwise: bool, strides=(8, 16, 32)) -> None:
        super().__init__()
        hidden = int(256 * width)
        self.strides = tuple(strides)
        # Registration order as in the official head, so state-dict keys come in the same order.
        self.cls_convs = nn.ModuleList(_branch(hidden, depthwise=depthwise) for _ in self.strides)
        self.reg_convs = nn.ModuleList(_branch(hidden, depthwise=depthwise) for _ in self.strides)
        self.cls_preds = nn.ModuleList(nn.Conv2d(hidden, num_classes, 1) for _ in self.strides)
        self.reg_preds = nn.ModuleList(nn.Conv2d(hidden, 4, 1) for _ in self.strides)
        self.obj_preds = nn.ModuleList(nn.Conv2d(hidden, 1, 1) for _ in self.strides)
        self.stems = nn.ModuleList(ConvBnAct(int(c * width), hidden, 1) for c in (256, 512, 1024))

    def forward(self, features) -> tuple[torch.Tensor, torch.Tensor]:
        levels = [self._level(k, x) for k, x in enumerate(features)]
        boxes = torch.cat([b for b, _ in levels], dim=1)
        scores = torch.cat([s for _, s in levels], dim=1)
        return boxes, scores

    def _level(self, k: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.stems[k](x)
        reg_feat = self.reg_convs[k](x)
        reg = self.reg_preds[k](reg_feat).flatten(2).transpose(1, 2)  # B, HW, 4
        obj = self.obj_preds[k](reg_feat).flatten(2).transpose(1, 2)  # B, HW, 1
        cls = self.cls_preds[k](self.cls_convs[k](x)).flatten(2).transpose(1, 2)  # B, HW, C
        boxes = decode_boxes(reg, grid_xy(x.shape[-2], x.shape[-1], x.dtype), self.strides[k])
        return boxes, obj.sigmoid() * cls.sigmoid()


def grid_xy(height: int, width: int, dtype: torch.dtype) -> torch.Tensor:
    """``[1, H*W, 2]`` (column, row) of every cell, row-major."""
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return torch.stack((cols, rows), dim=-1).reshape(1, -1, 2).to(dtype)


def decode_boxes(reg: torch.Tensor, grid: torch.Tensor, stride: int) -> torch.Tensor:
    """xyxy input pixels from YOLOX regressions: centre ``(reg + cell) * s``, size ``exp(reg) * s``."""
    centre = (reg[..., :2] + grid) * stride
    half = torch.exp(reg[..., 2:4]) * (stride / 2)
    return torch.cat((centre - half, centre + half), dim=-1)


class YOLOX(nn.Module):
    """The whole detector: ``backbone`` (PAFPN with CSPDarknet inside) and ``head``."""

    def __init__(self, depth: float, width: float, *, depthwise: bool = False, num_classes: int = 80) -> None:
        super().__init__()
        self.backbone = YOLOPAFPN(depth, width, depthwise=depthwise)
        self.head = YOLOXHead(num_classes, width, depthwise=depthwise)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``images`` ``[B, 3, H, W]`` BGR 0..255 -> ``(boxes [B, N, 4], scores [B, N, classes])``."""
        return self.head(self.backbone(images))
