"""LiteRT (ai-edge-litert): runs .tflite files with XNNPACK, no TensorFlow needed."""

from __future__ import annotations

import importlib.util

import numpy as np

from edgevision.backends import register_backend
from edgevision.backends.base import Backend
from edgevision.types import TensorSpec


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

    def _load(self) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(self.path), num_threads=self.threads)
        self.interpreter.allocate_tensors()
        self.settings["delegate"] = "XNNPACK (LiteRT's default CPU delegate)"
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
