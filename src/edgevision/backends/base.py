"""The small interface every runtime implements: named numpy inputs in, named outputs out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np

from edgevision.checks import MAX_THREADS
from edgevision.errors import EdgevisionError
from edgevision.modelfiles import load_failure
from edgevision.types import TensorSpec


class Backend(ABC):
    """A loaded model on one runtime. It runs tensors and nothing else.

    Subclasses set ``name``, ``label`` (the runtime's own name, for messages), ``suffixes``
    (model file types they load), ``extra`` (the pip extra that installs the runtime), and
    implement ``_load``, ``_run``. A runtime that can be told its inference precision lists
    the values in ``precisions`` and takes ``precision=``. ``threads=None`` leaves the
    runtime's own default. Any exception of ``_load`` becomes one ``EdgevisionError`` here,
    with the runtime's reason.

    >>> from edgevision.backends import create_backend
    >>> b = create_backend("onnxruntime", "model.onnx", threads=2)  # doctest: +SKIP
    >>> out = b.run({"images": x})                                  # doctest: +SKIP
    """

    name: ClassVar[str]
    label: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]]
    extra: ClassVar[str | None] = None
    precisions: ClassVar[tuple[str, ...]] = ()  # values of ``precision=`` the runtime takes, if any
    inference_precision: str | None = None  # the precision float layers run in, where the runtime says
    settings: dict[str, object]  # how the runtime was set up to run the file (threads, hints), for reports

    takes_device: ClassVar[bool] = False  # True when ``device=`` can pick other hardware than the CPU
    takes_streams: ClassVar[bool] = False  # True when ``streams=`` runs that many calls at once (see use_streams)
    streams: int = 1  # calls this loaded model runs at once, from as many threads

    def __init__(self, path: str | Path, *, threads: int | None = None, device: str | None = None) -> None:
        self.path = Path(path)
        self.device = device
        if threads is not None and not 1 <= threads <= MAX_THREADS:
            raise EdgevisionError(f"threads must be 1 to {MAX_THREADS}, got {threads}.")
        self.threads = threads
        self.metadata: dict[str, str] = {}  # the file's own key/value metadata, where the format has it
        self.settings = {"threads": threads if threads is not None else "runtime default"}
        if not self.path.exists():
            raise EdgevisionError(f"model file {self.path} does not exist.")
        try:
            self._load()
        except EdgevisionError:
            raise
        except Exception as exc:  # runtimes raise many types for files they cannot take
            raise load_failure(self.path, self.label, exc) from None

    @classmethod
    def is_available(cls) -> bool:
        """True when the runtime's package can be imported."""
        return True

    @classmethod
    def list_devices(cls) -> list[dict[str, str]]:
        """What this runtime can run on here: ``[{"device": ..., "name": ..., "notes": ...}]``."""
        return [{"device": "CPU", "name": "the host CPU", "notes": ""}]

    @abstractmethod
    def _load(self) -> None:
        """Load ``self.path`` and fill ``self.inputs`` / ``self.outputs``."""

    @abstractmethod
    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one inference on already-validated inputs."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Check ``feeds`` against the model's inputs, run, return outputs by name."""
        self.check_feeds(feeds)
        return self._run(feeds)

    def check_feeds(self, feeds: dict[str, np.ndarray]) -> None:
        """Raise a clear error when an input is missing, unknown or of the wrong shape or dtype."""
        names = {spec.name for spec in self.inputs}
        unknown = set(feeds) - names
        missing = names - set(feeds)
        if unknown or missing:
            raise EdgevisionError(
                f"model inputs are {sorted(names)}, got {sorted(feeds)}; "
                f"missing {sorted(missing)}, unknown {sorted(unknown)}."
            )
        for spec in self.inputs:
            problem = spec.accepts(np.asarray(feeds[spec.name]))
            if problem:
                raise EdgevisionError(f"{problem}.")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path.name!r}, threads={self.threads})"
