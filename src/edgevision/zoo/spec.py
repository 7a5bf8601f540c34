"""What a zoo entry pins: where its files come from and how the model is run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgevision.packages import Artifact

if TYPE_CHECKING:
    from edgevision.models.base import Predictor, Processor


@dataclass(frozen=True)
class Weights:
    """A checkpoint users download themselves (no registry package carries it)."""

    filename: str
    url: str
    sha256: str = ""  # of the official file, when known
    layout: str = ""  # what the checkpoint holds, e.g. "dict with a 'model' state dict"


@dataclass(frozen=True)
class ModelSpec:
    """A zoo entry: provenance, task, input size, pre-processing, and how to build a predictor.

    ``prepare(folder)`` turns the pulled artifacts in ``folder`` into runnable files (for
    example TF.js -> ``model.onnx``); ``predictor(spec, folder, backend, threads)`` builds the
    callable that maps a BGR image to ``Detections`` or ``Poses``.
    """

    name: str
    task: str  # "detection" or "pose"
    family: str
    input_size: tuple[int, int]  # (width, height); for variable-size models, the long-side limit
    license: str
    summary: str
    preprocessing: str
    artifacts: tuple[Artifact, ...]
    predictor: Callable[..., Predictor] | None = None
    prepare: Callable[[Path], None] | None = None
    # model files by runtime-neutral format, e.g. {"onnx": "model.onnx", "tflite": "model.tflite"}
    files: dict[str, str] = field(default_factory=dict)
    needs_extra: str | None = None  # pip extra that ``prepare`` needs
    # files beside the model file that its decoding runs, by the runtime each needs
    # (BlazePose's person detector); a deploy bundle carries them
    companions: dict[str, str] = field(default_factory=dict)
    homepage: str = ""
    # PyTorch families (weights brought by the user, or random for size and speed studies):
    build: Callable[[], Any] | None = None  # returns an eval-mode torch.nn.Module
    processor: Callable[[], Processor] | None = None  # pre-processing + decoding
    weights: Weights | None = None
    load_weights: Callable[[Any, Path], None] | None = None  # (module, checkpoint path), strict
    output_names: tuple[str, ...] = ()  # names given to the exported graph's outputs
    random_init: Callable[[Any], None] | None = None  # re-initialise a module built for --random-weights
    flops_input: tuple[int, ...] = ()  # NCHW shape at which FLOPs are counted
