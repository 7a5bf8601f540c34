"""ONNX Runtime: the core runtime, always installed."""

from __future__ import annotations

import numpy as np

from edgevision.backends import register_backend
from edgevision.backends.base import Backend
from edgevision.types import TensorSpec

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


def _spec(arg) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else None for d in arg.shape)
    return TensorSpec(arg.name, shape, _ORT_TYPES.get(arg.type, arg.type))


@register_backend
class OnnxRuntimeBackend(Backend):
    """ONNX Runtime on the CPU execution provider, full graph optimisation."""

    name = "onnxruntime"
    label = "ONNX Runtime"
    suffixes = (".onnx",)

    def _load(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if self.threads is not None:
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            # Spinning idle threads steal the CPU from video decoding on small boards.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.settings.update(
            {"graph optimization": "all", "idle threads spin": self.threads is None, "inter-op threads": 1}
        )
        self.inputs = [_spec(a) for a in self.session.get_inputs()]
        self.outputs = [_spec(a) for a in self.session.get_outputs()]
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.session.run(None, feeds)
        return {spec.name: value for spec, value in zip(self.outputs, values)}
