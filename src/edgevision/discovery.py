"""Import every module of a package once, so that decorators in them fill a registry.

A new runtime, quantizer or model family is then one new file that nobody has to list.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil


@functools.cache
def import_submodules(package: str, skip: frozenset[str] = frozenset()) -> None:
    """Import ``package.<name>`` for every module in ``package`` whose name is not in ``skip``."""
    module = importlib.import_module(package)
    for info in pkgutil.iter_modules(module.__path__):
        if info.name not in skip:
            importlib.import_module(f"{package}.{info.name}")
