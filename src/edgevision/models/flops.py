"""Parameter and multiply-accumulate counts of PyTorch models.

MACs are counted with ``torch.utils.flop_counter.FlopCounterMode``, PyTorch's maintained
counter, which counts 2 FLOPs per multiply-accumulate of convolutions and matrix products
(bias adds, BatchNorm, activations and pooling are not counted). ``count_macs`` returns
FLOPs / 2. YOLOX's published "GFLOPs" are 2 x MACs (thop MACs doubled in
``get_model_info``): compare them with ``2 * count_macs(...) / 1e9``.

>>> from edgevision.models.yolox import build_yolox          # doctest: +SKIP
>>> count_params(build_yolox("yolox-nano")) / 1e6             # doctest: +SKIP
0.912159
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def count_params(module) -> int:
    """Number of parameters (buffers such as BatchNorm running statistics excluded)."""
    return sum(p.numel() for p in module.parameters())


def count_macs(module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass on a zero input of ``input_shape``."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        module(torch.zeros(input_shape))
    return counter.get_total_flops() // 2
