"""OpenVINO on the CPU: reads OpenVINO IR (.xml + .bin) or ONNX directly."""

from __future__ import annotations

import importlib.util

import numpy as np

from edgevision.backends import register_backend
from edgevision.backends.base import Backend
from edgevision.types import TensorSpec


def _spec(port) -> TensorSpec:
    shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    return TensorSpec(port.get_any_name(), shape, np.dtype(port.get_element_type().to_dtype()).name)


def _metadata(model) -> dict[str, str]:
    """The card edgevision put in the IR's runtime info, under the same key as in ONNX files."""
    key = "edgevision.card"
    return {key: model.get_rt_info(key).astype(str)} if model.has_rt_info(key) else {}


@register_backend
class OpenVinoBackend(Backend):
    """OpenVINO CPU plugin with fp32 inference precision.

    OpenVINO silently runs in bf16 on CPUs that support it; ``precision="f32"`` (the default)
    forces true fp32 so baselines compare like with like. Pass ``precision=None`` to keep
    the plugin's own choice.
    """

    name = "openvino"
    label = "OpenVINO"
    suffixes = (".xml", ".onnx")
    extra = "openvino"
    precision: str | None = "f32"

    @classmethod
    def is_available(cls) -> bool:
        return importlib.util.find_spec("openvino") is not None

    def _load(self) -> None:
        import openvino as ov

        config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY"}
        if self.precision:
            config["INFERENCE_PRECISION_HINT"] = self.precision
        if self.threads is not None:
            config["INFERENCE_NUM_THREADS"] = self.threads
        core = ov.Core()
        model = core.read_model(str(self.path))
        self.metadata = _metadata(model)
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.inputs = [_spec(p) for p in self.compiled.inputs]
        self.outputs = [_spec(p) for p in self.compiled.outputs]

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.request.infer({name: np.ascontiguousarray(x) for name, x in feeds.items()})
        return {spec.name: np.array(results[port]) for spec, port in zip(self.outputs, self.compiled.outputs)}
