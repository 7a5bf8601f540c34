"""The registry of zoo models: every file in ``edgevision.zoo.catalog`` registers its entries.

>>> from edgevision.zoo.registry import list_models
>>> "nanodet-m" in list_models()
True
"""

from __future__ import annotations

import difflib
import fnmatch

from edgevision.discovery import import_submodules
from edgevision.errors import EdgevisionError
from edgevision.zoo.spec import ModelSpec

_REGISTRY: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add ``spec`` to the zoo under ``spec.name``."""
    _REGISTRY[spec.name] = spec
    return spec


def _discover() -> None:
    import_submodules("edgevision.zoo.catalog")


def list_models(pattern: str = "*") -> list[str]:
    """Names of zoo models matching a shell-style ``pattern``."""
    _discover()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_spec(name: str) -> ModelSpec:
    """The zoo entry called ``name``; an unknown name suggests the closest ones."""
    _discover()
    if name in _REGISTRY:
        return _REGISTRY[name]
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.4)
    hint = f"did you mean {' or '.join(close)}?" if close else f"known models: {', '.join(list_models())}."
    raise EdgevisionError(f"unknown model '{name}'; {hint} (see: edgevision zoo list)")
