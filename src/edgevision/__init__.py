"""edgevision: make image and video AI fast on CPU-only edge devices, and measure what it cost."""

from edgevision.errors import EdgevisionError
from edgevision.types import Detections, Poses, RawOutputs, TensorSpec

__version__ = "0.1.0"
__all__ = ["Detections", "Poses", "RawOutputs", "TensorSpec", "EdgevisionError", "__version__"]
