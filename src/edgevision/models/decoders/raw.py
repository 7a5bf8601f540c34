"""``raw``: no decoding; the outputs are reported as they are."""

from __future__ import annotations

import numpy as np

from edgevision.models.decoders import DecodeContext, register_decoder
from edgevision.types import RawOutputs


@register_decoder(
    "raw",
    task="raw",
    summary="no decoding: output tensors as they are",
    input_size=(224, 224),
    resize="stretch",
    mean=0.0,
    std=255.0,
)
def decode_raw(outputs: dict[str, np.ndarray], context: DecodeContext) -> RawOutputs:
    return RawOutputs(outputs)
