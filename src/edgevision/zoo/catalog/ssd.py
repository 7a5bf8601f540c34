"""The zoo entry of the ssd family: pinned sources, licence, files and wiring."""

from __future__ import annotations

from pathlib import Path

from edgevision.backends import create_backend
from edgevision.conversion.tflite import tflite_to_onnx
from edgevision.models.base import Predictor
from edgevision.models.ssd import OIDV4_LABELS, SsdProcessor, read_labels
from edgevision.zoo.assemble import SingleStagePredictor
from edgevision.zoo.registry import register_model
from edgevision.zoo.spec import Artifact, ModelSpec

_PACKAGE, _VERSION = "@mediapipe/objectron", "0.4.1675468480"
_PACKED = "package/objectron_solution_packed_assets.data"
_CDN = f"https://cdn.jsdelivr.net/npm/{_PACKAGE}@{_VERSION}/objectron_solution_packed_assets.data"
# Offsets from package/objectron_solution_packed_assets_loader.js ("files": start/end).
_LABELMAP = Artifact(
    "labelmap.txt",
    "npm",
    _PACKAGE,
    _VERSION,
    _PACKED,
    "c148336a65f673013609a923fdcbdeec0f49df935045029c3746a3828a0e80e0",
    _CDN,
    offset=0,
    size=184,
)
_MODEL = Artifact(
    "model.tflite",
    "npm",
    _PACKAGE,
    _VERSION,
    _PACKED,
    "d0a5255bf8c4f5a0bc4240741a76c41d5e939f7655078f945f50ab53a9375da6",
    _CDN,
    offset=184,
    size=9987728,
)


def prepare(folder: Path) -> None:
    """Convert the fp16 ``model.tflite`` to ``model.onnx`` (checked against LiteRT)."""
    tflite_to_onnx(folder / "model.tflite", folder / "model.onnx", input_range=(-1.0, 1.0))


def model_path(spec: ModelSpec, folder: Path, backend: str | None) -> tuple[str, Path]:
    """The runtime and file for ``backend``: the .tflite on LiteRT, else the .onnx."""
    runtime = backend or "onnxruntime"
    fmt = "tflite" if runtime == "litert" else "onnx"
    return runtime, folder / spec.files[fmt]


def oidv4_processor() -> SsdProcessor:
    """Pre-processing and decoding for files made from this model (quantized, re-exported)."""
    return SsdProcessor(class_names=OIDV4_LABELS)


def predictor(spec: ModelSpec, folder: Path, backend: str | None = None, threads: int | None = None) -> Predictor:
    """SSD-MobileNetV2 OIDv4 on ONNX Runtime (default), OpenVINO or LiteRT."""
    runtime, path = model_path(spec, folder, backend)
    processor = SsdProcessor(class_names=read_labels(folder / "labelmap.txt"), input_size=spec.input_size)
    return SingleStagePredictor(create_backend(runtime, path, threads=threads), processor)


register_model(
    ModelSpec(
        name="ssd-mobilenetv2-oidv4",
        task="detection",
        family="ssd",
        input_size=(300, 300),
        license="Apache-2.0",
        summary=(
            "SSD-MobileNetV2 300x300 trained on a 24-class Open Images v4 subset (Person, Car, Bicycle, "
            "Dog, ...), fp16 weights; MediaPipe Objectron's detector. Scores run low: default threshold 0.4."
        ),
        preprocessing="stretch to 300x300, RGB, x / 127.5 - 1, NHWC float32",
        artifacts=(_MODEL, _LABELMAP),
        predictor=predictor,
        prepare=prepare,
        processor=oidv4_processor,
        files={"onnx": "model.onnx", "tflite": "model.tflite"},
        needs_extra="convert",
        homepage="https://github.com/google-ai-edge/mediapipe",
    )
)
