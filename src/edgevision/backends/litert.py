"""LiteRT (ai-edge-litert): runs .tflite files with XNNPACK, no TensorFlow needed."""

from __future__ import annotations

import ctypes.util
import importlib.util

import numpy as np

from edgevision.backends import register_backend
from edgevision.backends.base import Backend
from edgevision.errors import EdgevisionError
from edgevision.types import TensorSpec

EDGETPU_LIBRARY = "libedgetpu.so.1"  # the Coral runtime's delegate


def tensor_spec(detail: dict) -> TensorSpec:
    signature = detail.get("shape_signature", detail["shape"])
    shape = tuple(None if s < 0 else int(s) for s in signature)
    return TensorSpec(detail["name"], shape, np.dtype(detail["dtype"]).name)


@register_backend
class LiteRtBackend(Backend):
    """The LiteRT interpreter with its default delegate (XNNPACK on CPU)."""

    name = "litert"
    label = "LiteRT"
    suffixes = (".tflite",)
    extra = "litert"

    @classmethod
    def is_available(cls) -> bool:
        return importlib.util.find_spec("ai_edge_litert") is not None

    takes_device = True  # a delegate: edgetpu, or the path of a delegate library

    @classmethod
    def list_devices(cls) -> list[dict[str, str]]:
        found = [{"device": "CPU", "name": "XNNPACK", "notes": "LiteRT's default CPU delegate"}]
        library = ctypes.util.find_library("edgetpu")
        notes = f"delegate {library}" if library else "needs libedgetpu.so.1 (the Coral runtime) and an Edge TPU"
        return found + [{"device": "edgetpu", "name": "Coral Edge TPU", "notes": notes}]

    def _delegates(self) -> list:
        """The delegate ``self.device`` names (none for the CPU), loaded; one sentence when it cannot be."""
        device = (self.device or "CPU").strip()
        if device.upper() in ("CPU", "XNNPACK"):
            return []
        from ai_edge_litert.interpreter import load_delegate

        library = EDGETPU_LIBRARY if device.lower() == "edgetpu" else device
        try:
            return [load_delegate(library)]
        except (ValueError, OSError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EdgevisionError(
                f"LiteRT cannot load the delegate {library} ({reason}); devices here: CPU"
                + (", edgetpu" if ctypes.util.find_library("edgetpu") else "")
                + "."
            ) from None

    def _load(self) -> None:
        from ai_edge_litert.interpreter import Interpreter

        delegates = self._delegates()
        self.interpreter = Interpreter(
            model_path=str(self.path), num_threads=self.threads, experimental_delegates=delegates or None
        )
        self.interpreter.allocate_tensors()
        self.settings["delegate"] = self.device if delegates else "XNNPACK (LiteRT's default CPU delegate)"
        self._in = self.interpreter.get_input_details()
        self._out = self.interpreter.get_output_details()
        self.inputs = [tensor_spec(d) for d in self._in]
        self.outputs = [tensor_spec(d) for d in self._out]

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        resized = False
        for detail in self._in:
            x = feeds[detail["name"]]
            if tuple(detail["shape"]) != x.shape:
                self.interpreter.resize_tensor_input(detail["index"], x.shape)
                resized = True
        if resized:
            self.interpreter.allocate_tensors()
            self._in = self.interpreter.get_input_details()
            self._out = self.interpreter.get_output_details()
        for detail in self._in:
            self.interpreter.set_tensor(detail["index"], np.ascontiguousarray(feeds[detail["name"]]))
        self.interpreter.invoke()
        return {d["name"]: self.interpreter.get_tensor(d["index"]).copy() for d in self._out}
