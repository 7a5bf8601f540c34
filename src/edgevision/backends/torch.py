"""PyTorch eager: the fp32 baseline. Loads ``torch.export`` programs (.pt2)."""

from __future__ import annotations

import importlib.util

import numpy as np

from edgevision.backends import register_backend
from edgevision.backends.base import Backend
from edgevision.types import TensorSpec


def _placeholder_specs(program) -> list[TensorSpec]:
    names = set(program.graph_signature.user_inputs)
    specs = []
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in names:
            val = node.meta["val"]
            shape = tuple(int(d) if str(d).isdigit() else None for d in val.shape)
            specs.append(TensorSpec(node.name, shape, str(val.dtype).removeprefix("torch.")))
    return specs


@register_backend
class TorchBackend(Backend):
    """A ``torch.export`` program run eagerly on the CPU.

    ``threads`` sets ``torch.set_num_threads``, which is per process: time one torch model
    per process.
    """

    name = "torch"
    label = "PyTorch"
    suffixes = (".pt2",)
    extra = "torch"

    @classmethod
    def is_available(cls) -> bool:
        return importlib.util.find_spec("torch") is not None

    def _load(self) -> None:
        import torch

        if self.threads is not None:
            torch.set_num_threads(self.threads)
        program = torch.export.load(str(self.path))
        self.module = program.module()
        self.inputs = _placeholder_specs(program)
        self.outputs = [TensorSpec(spec.arg.name, (), "float32") for spec in program.graph_signature.output_specs]

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        with torch.inference_mode():
            result = self.module(*(torch.from_numpy(np.ascontiguousarray(feeds[s.name])) for s in self.inputs))
        values = result if isinstance(result, (tuple, list)) else (result,)
        return {spec.name: v.numpy() for spec, v in zip(self.outputs, values)}
