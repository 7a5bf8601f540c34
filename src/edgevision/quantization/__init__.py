"""Quantization: one backend-neutral entry point, one file per runtime, found automatically.

>>> from edgevision.quantization import list_quantizers
>>> sorted(list_quantizers())  # doctest: +SKIP
['litert', 'openvino', 'ort']
"""

from __future__ import annotations

from edgevision.discovery import import_submodules
from edgevision.errors import EdgevisionError, MissingExtraError
from edgevision.quantization.base import Feeds, QuantizeOptions, Quantizer

_REGISTRY: dict[str, type[Quantizer]] = {}
_NOT_BACKENDS = frozenset({"base", "calibration", "sensitivity", "budget", "api", "opset", "postprocess"})


def register_quantizer(cls: type[Quantizer]) -> type[Quantizer]:
    """Class decorator that makes a quantizer available by its ``name``."""
    _REGISTRY[cls.name] = cls
    return cls


def _discover() -> None:
    import_submodules(__name__, _NOT_BACKENDS)


def list_quantizers() -> list[str]:
    _discover()
    return sorted(_REGISTRY)


def get_quantizer(name: str) -> Quantizer:
    """An instance of quantizer ``name``; a clear error when unknown or not installed."""
    _discover()
    cls = _REGISTRY.get(name)
    if cls is None:
        raise EdgevisionError(f"unknown quantization backend '{name}'; choose one of {', '.join(list_quantizers())}.")
    if not cls.is_available():
        raise MissingExtraError(cls.name, cls.extra or cls.name)
    return cls()


__all__ = ["Feeds", "QuantizeOptions", "Quantizer", "register_quantizer", "list_quantizers", "get_quantizer"]
