"""The one assembly step: from a zoo name or a model file to a predictor or a source to convert.

>>> from edgevision.zoo.assemble import load_predictor
>>> predictor = load_predictor("nanodet-m", backend="onnxruntime", threads=2)  # doctest: +SKIP
>>> detections = predictor(image)                                               # doctest: +SKIP

A file that edgevision produced (it has a metadata file beside it) or pulled (it sits in a
zoo model's cache folder) is decoded as its source zoo model; any other file reports raw
output tensors. PyTorch zoo families (YOLOX, OpenPose) need ``weights`` or
``random_weights`` and are exported to ONNX once per checkpoint.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from edgevision.backends import Backend, create_backend
from edgevision.conversion.api import ExportOptions, SourceModel
from edgevision.errors import EdgevisionError
from edgevision.files import sha256_file
from edgevision.modelfiles import check_model_file
from edgevision.models.base import Predictor, Processor
from edgevision.models.raw import RawImageProcessor
from edgevision.models.transforms import ImageTransform
from edgevision.types import Prediction, RawOutputs
from edgevision.variants import read_meta
from edgevision.zoo.pull import MANIFEST, check_pulled_file, model_file, pulled_dir
from edgevision.zoo.pytorch import export_torch_model, is_pytorch_family
from edgevision.zoo.registry import get_spec, list_models
from edgevision.zoo.spec import ModelSpec

logger = logging.getLogger(__name__)

MODEL_SUFFIXES = (".onnx", ".tflite", ".xml", ".pt2")


class SingleStagePredictor(Predictor):
    """One model on one backend: pre-process, run, decode."""

    def __init__(self, backend: Backend, processor: Processor) -> None:
        self.backend = backend
        self.backends = (backend,)
        self.processor = processor
        self.task = processor.task
        self._input = backend.inputs[0].name

    def feeds(self, image: np.ndarray) -> tuple[dict[str, np.ndarray], ImageTransform]:
        """The backend's inputs for ``image`` and the transform that decodes its outputs."""
        tensor, transform = self.processor.preprocess(image)
        return {self._input: tensor}, transform

    def __call__(self, image: np.ndarray) -> Prediction:
        feeds, transform = self.feeds(image)
        return self.processor.decode(self.backend.run(feeds), transform)


class RawPredictor(Predictor):
    """A model file with no known decoder: fit the image to its first input, report outputs.

    Other inputs are fed zeros of their shape.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.backends = (backend,)
        first = backend.inputs[0]
        self.processor = RawImageProcessor.for_input(first)
        if self.processor is None:
            raise EdgevisionError(
                f"{backend.path.name} has no known decoder and its input {first.name} {first.shape} is not an image."
            )
        self._others = {
            spec.name: np.zeros([d or 1 for d in spec.shape], dtype=spec.dtype) for spec in backend.inputs[1:]
        }
        if self._others:
            logger.warning(
                "%s has %d inputs: the image goes to %s, and %s get zeros, so its outputs may mean nothing.",
                backend.path.name,
                len(backend.inputs),
                first.name,
                ", ".join(self._others),
            )

    def feeds(self, image: np.ndarray) -> tuple[dict[str, np.ndarray], ImageTransform]:
        """The backend's inputs for ``image`` (zeros for inputs after the first) and the transform."""
        tensor, transform = self.processor.preprocess(image)
        return {self.backend.inputs[0].name: tensor, **self._others}, transform

    def __call__(self, image: np.ndarray) -> RawOutputs:
        return RawOutputs(self.backend.run(self.feeds(image)[0]))


# ----------------------------------------------------------------------------- naming a model


def resolve_model(model: str) -> ModelSpec | Path:
    """The zoo entry or model file that ``model`` names; a clear error when it names neither.

    A file is checked against its format here (see ``edgevision.modelfiles``), so a broken
    file is one sentence before any command starts its work.
    """
    if model in list_models():
        return get_spec(model)
    path = Path(model)
    if path.is_file():
        check_pulled_file(path)
        return check_model_file(path)
    if path.is_dir():
        raise EdgevisionError(f"{model} is a folder; give a model file or a zoo name.")
    if path.suffix.lower() in MODEL_SUFFIXES or "/" in model:
        raise EdgevisionError(f"model file {model} does not exist.")
    return get_spec(model)  # raises, naming the closest zoo models


def refuse_weights(spec: ModelSpec, weights: Path | None, random_weights: bool) -> None:
    """Refuse ``--weights`` / ``--random-weights`` for a zoo model that ships its own weights."""
    if weights is not None or random_weights:
        raise EdgevisionError(
            f"{spec.name} ships its own weights; --weights and --random-weights are for PyTorch models."
        )


def source_model_of(path: Path) -> str | None:
    """The zoo model a file decodes as: from its metadata file, or because it is a pulled zoo file."""
    meta = read_meta(path)
    if meta is not None:
        return meta.source_model if meta.source_model in list_models() else None
    manifest = path.parent / MANIFEST
    if manifest.exists():
        name = json.loads(manifest.read_text()).get("name")
        return name if name in list_models() and path.name in get_spec(name).files.values() else None
    return None


def processor_for(model: str | None) -> Processor | None:
    """The pre-processing and decoding of zoo model ``model`` (None when unknown or multi-stage)."""
    if not model or model not in list_models():
        return None
    spec = get_spec(model)
    return spec.processor() if spec.processor is not None else None


# ----------------------------------------------------------------------------- predictors


def load_predictor(
    model: str,
    *,
    backend: str | None = None,
    threads: int | None = None,
    weights: Path | None = None,
    random_weights: bool = False,
) -> Predictor:
    """A predictor for zoo model ``model`` or a model file (see the module docstring)."""
    target = resolve_model(str(model))
    if isinstance(target, Path):
        return _file_predictor(target, backend=backend, threads=threads)
    if is_pytorch_family(target):
        return _pytorch_predictor(
            target, backend=backend, threads=threads, weights=weights, random_weights=random_weights
        )
    refuse_weights(target, weights, random_weights)
    return target.predictor(target, pulled_dir(target.name), backend, threads)


def single_stage(spec: ModelSpec, path: Path, runtime: str | None, threads: int | None) -> Predictor:
    """The family's processor on ``path`` with ``runtime``: what most catalogue entries wire."""
    return SingleStagePredictor(create_backend(runtime, path, threads=threads), spec.processor())


def _file_predictor(path: Path, *, backend: str | None, threads: int | None) -> Predictor:
    meta = read_meta(path)
    processor = processor_for(source_model_of(path))
    runtime = backend or (meta.runtime if meta else None)
    if processor is None:
        return RawPredictor(create_backend(runtime, path, threads=threads))
    predictor = SingleStagePredictor(create_backend(runtime, path, threads=threads), processor)
    predictor.random_weights = bool(meta and meta.random_weights)
    return predictor


def _pytorch_predictor(
    spec: ModelSpec, *, backend: str | None, threads: int | None, weights: Path | None, random_weights: bool
) -> Predictor:
    runtime = backend or "onnxruntime"
    if runtime == "litert":
        raise EdgevisionError(
            f"{spec.name} has no .tflite file yet; make one with: edgevision convert {spec.name} --to tflite."
        )
    fmt = "pt2" if runtime == "torch" else "onnx"
    path = export_torch_model(spec, weights=weights, random_weights=random_weights, fmt=fmt)
    predictor = single_stage(spec, path, runtime, threads)
    predictor.random_weights = weights is None
    return predictor


# ----------------------------------------------------------------------------- sources to convert


def resolve_source(
    model: str,
    workdir: Path,
    *,
    weights: Path | None = None,
    random_weights: bool = False,
    export: ExportOptions = ExportOptions(),
) -> SourceModel:
    """The ONNX form of zoo model or file ``model`` (converted into ``workdir`` when needed)."""
    target = resolve_model(str(model))
    if isinstance(target, Path):
        if weights is not None or random_weights:
            raise EdgevisionError("--weights and --random-weights are for PyTorch zoo models, not model files.")
        return _file_source(target, workdir)
    if is_pytorch_family(target):
        return _pytorch_source(target, weights=weights, random_weights=random_weights, export=export)
    refuse_weights(target, weights, random_weights)
    processor = processor_for(target.name)
    if "onnx" in target.files:
        onnx = model_file(target.name, "onnx")
        return SourceModel(target.name, onnx, sha256_file(onnx), processor)
    if "tflite" in target.files:
        source = _file_source(model_file(target.name, "tflite"), workdir)
        return SourceModel(target.name, source.onnx, source.sha256, processor, source.original, notes=source.notes)
    raise EdgevisionError(f"{target.name} has no ONNX or TFLite file to convert from.")


def _file_source(path: Path, workdir: Path) -> SourceModel:
    processor = processor_for(source_model_of(path))
    meta = read_meta(path)
    random_weights = bool(meta and meta.random_weights)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return SourceModel(str(path), path, sha256_file(path), processor, random_weights=random_weights)
    if suffix == ".tflite":
        from edgevision.conversion.tflite import tflite_to_onnx

        onnx = workdir / f"{path.stem}.onnx"
        tflite_to_onnx(path, onnx)
        return SourceModel(
            str(path), onnx, sha256_file(path), processor, original=path, notes=["via tf2onnx from .tflite"]
        )
    raise EdgevisionError(f"cannot convert {path.name}: give an .onnx or .tflite file, or a zoo model name.")


def _pytorch_source(
    spec: ModelSpec, *, weights: Path | None, random_weights: bool, export: ExportOptions
) -> SourceModel:
    onnx = export_torch_model(
        spec, weights=weights, random_weights=random_weights, opset=export.opset, dynamic_batch=export.dynamic_batch
    )
    exported = read_meta(onnx)
    return SourceModel(
        spec.name,
        onnx,
        sha256_file(Path(weights)) if weights else "random weights",
        processor_for(spec.name),
        random_weights=weights is None,
        notes=list(exported.notes) if exported else [],
        export_parity=exported.parity if exported else {},
    )
