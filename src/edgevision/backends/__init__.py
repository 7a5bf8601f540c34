"""Runtime registry: one file per runtime in this package, found automatically.

>>> from edgevision.backends import list_backends
>>> "onnxruntime" in list_backends()
True
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator
from pathlib import Path

from edgevision.backends.base import Backend
from edgevision.discovery import import_submodules
from edgevision.errors import EdgevisionError, MissingExtraError

logger = logging.getLogger(__name__)

_REGISTRY: dict[str, type[Backend]] = {}
_DEVICE: contextvars.ContextVar[str | None] = contextvars.ContextVar("edgevision_device", default=None)
_STREAMS: contextvars.ContextVar[int] = contextvars.ContextVar("edgevision_streams", default=1)
CPU_NAMES = ("cpu", "CPU")


@contextlib.contextmanager
def use_device(device: str | None) -> Iterator[None]:
    """Backends created inside the block run on ``device`` (see ``create_backend``); None: the CPU.

    A context rather than one more argument through every model family's loader: a zoo model
    may load several backends (a detector and a landmark model), and all take the device.
    """
    token = _DEVICE.set(device)
    try:
        yield
    finally:
        _DEVICE.reset(token)


def current_device() -> str | None:
    """The device ``use_device`` set for this context (None: the CPU), e.g. to hand to a worker process."""
    return _DEVICE.get()


@contextlib.contextmanager
def use_streams(streams: int) -> Iterator[None]:
    """Backends created inside the block that can (``Backend.takes_streams``: OpenVINO) run
    ``streams`` calls at once, from as many threads, each call on its own ``threads``.

    A context for the same reason as ``use_device``. Runtimes without streams ignore it:
    their callers load one copy per thread instead (``edgevision.api.load(workers=)``).
    """
    token = _STREAMS.set(streams)
    try:
        yield
    finally:
        _STREAMS.reset(token)


def list_devices() -> dict[str, list[dict[str, str]]]:
    """``{runtime: its devices}`` for every installed runtime."""
    return {name: get_backend_class(name).list_devices() for name in list_backends(available_only=True)}


def register_backend(cls: type[Backend]) -> type[Backend]:
    """Class decorator that makes a runtime available by its ``name``."""
    _REGISTRY[cls.name] = cls
    return cls


def _discover() -> None:
    import_submodules(__name__, frozenset({"base"}))


def list_backends(*, available_only: bool = False) -> list[str]:
    """Names of the registered runtimes (only the installed ones with ``available_only``)."""
    _discover()
    return sorted(n for n, c in _REGISTRY.items() if not available_only or c.is_available())


def get_backend_class(name: str) -> type[Backend]:
    """The runtime class called ``name``; a clear error when unknown or not installed."""
    _discover()
    cls = _REGISTRY.get(name)
    if cls is None:
        raise EdgevisionError(f"unknown backend '{name}'; choose one of {', '.join(list_backends())}.")
    if not cls.is_available():
        raise MissingExtraError(cls.name, cls.extra or cls.name)
    return cls


def backend_for_file(path: str | Path) -> str:
    """The default runtime for a model file, chosen by its suffix."""
    _discover()
    suffix = Path(path).suffix.lower()
    for name in ("onnxruntime", "litert", "openvino", "torch", "ncnn"):
        cls = _REGISTRY.get(name)
        if cls and suffix in cls.suffixes:
            return name
    raise EdgevisionError(f"{path} is not a model file edgevision can run (.onnx, .tflite, .xml, .pt2, .param).")


# the ``edgevision convert --to`` target that makes each runtime's own file format
CONVERT_TARGET = {"ncnn": "ncnn", "litert": "tflite"}


def create_backend(
    name: str | None,
    path: str | Path,
    *,
    threads: int | None = None,
    precision: str | None = None,
    device: str | None = None,
) -> Backend:
    """Load ``path`` on runtime ``name`` (chosen from the file type when None).

    ``precision`` is passed only to runtimes that take one (see ``Backend.precisions``);
    None leaves the runtime's own rule. ``device`` (default: the one ``use_device`` set, else
    the CPU) is OpenVINO's device name (CPU, GPU, NPU, AUTO, HETERO:..., MULTI:...) or a
    LiteRT delegate; other runtimes run on the CPU only.
    """
    device = device if device is not None else _DEVICE.get()
    name = name or backend_for_file(path)
    cls = get_backend_class(name)
    if Path(path).suffix.lower() not in cls.suffixes:
        target = CONVERT_TARGET.get(name)
        how = (
            f" Convert the model first (edgevision convert MODEL --to {target} -o model{cls.suffixes[0]}) "
            f"and give that file, or bench it: its {name}- variants are built for you."
            if target
            else ""
        )
        raise EdgevisionError(
            f"backend '{name}' cannot load {Path(path).suffix or 'extension-less'} files; "
            f"it takes {', '.join(cls.suffixes)}.{how}"
        )
    if device is not None and device.upper() == "CPU" and not cls.takes_device:
        device = None
    if device is not None and not cls.takes_device:
        raise EdgevisionError(
            f"{cls.label} runs on the CPU only here; --device {device} is for openvino (CPU, GPU, NPU, AUTO ...) "
            "and litert delegates (see edgevision devices)."
        )
    extra: dict[str, object] = {"device": device} if device is not None else {}
    if cls.takes_streams and _STREAMS.get() > 1:
        extra["streams"] = _STREAMS.get()
    if precision is None:
        return cls(path, threads=threads, **extra)
    if precision not in cls.precisions:
        takes = f"takes {', '.join(cls.precisions)}" if cls.precisions else "cannot be told a precision"
        raise EdgevisionError(f"backend '{name}' {takes}, not precision {precision!r}.")
    return cls(path, threads=threads, precision=precision, **extra)


__all__ = ["Backend", "register_backend", "list_backends", "create_backend", "get_backend_class", "backend_for_file"]
