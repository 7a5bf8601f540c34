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
from collections.abc import Sequence
from dataclasses import dataclass, fields, is_dataclass, replace
from pathlib import Path

import numpy as np

from edgevision.backends import Backend, backend_for_file, create_backend, get_backend_class, use_streams
from edgevision.bundles import is_bundle, open_bundle, run_precision
from edgevision.checks import check_workers, usable_cores
from edgevision.conversion.api import ExportOptions, SourceModel
from edgevision.errors import EdgevisionError
from edgevision.files import sha256_file
from edgevision.modelfiles import check_model_file
from edgevision.models.base import Predictor, Processor
from edgevision.models.card import (
    METADATA_KEY,
    CardProcessor,
    CardRequest,
    ModelCard,
    card_file_beside,
    card_from_dict,
    read_card,
    resolve_card,
)
from edgevision.models.raw import raw_processor
from edgevision.models.recognize import recognise
from edgevision.models.transforms import ImageTransform
from edgevision.types import Prediction, RawOutputs
from edgevision.variants import meta_path, read_meta
from edgevision.zoo.isolate import InferenceProcess, worker_processes
from edgevision.zoo.pull import MANIFEST, check_pulled_file, model_file, pulled_dir
from edgevision.zoo.pytorch import export_torch_model, is_pytorch_family
from edgevision.zoo.registry import get_spec, list_models
from edgevision.zoo.spec import ModelSpec

logger = logging.getLogger(__name__)
HANDED_ON = "its card"  # the CardRequest source of a card passed from one step to the next

MODEL_SUFFIXES = (".onnx", ".tflite", ".xml", ".pt2", ".param")


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
    """A model file with no decoder: fit the image to its first input, report the outputs.

    The image goes in as the ``raw`` card (or the given one) says; other inputs are fed
    zeros of their shape.
    """

    def __init__(self, backend: Backend, processor: Processor | None = None) -> None:
        self.backend = backend
        self.backends = (backend,)
        first = backend.inputs[0]
        self.processor = processor or raw_processor(first)
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


# ----------------------------------------------------------------------------- cards


@dataclass(frozen=True)
class Decoding:
    """How a model file is fed and read, and one line saying so (printed for every command)."""

    processor: Processor | None  # None: raw outputs, the default raw pre-processing
    how: str
    card: ModelCard | None = None  # the card used, carried into every file made from this one

    @property
    def card_fields(self) -> dict:
        """The card's set fields, as the metadata of a produced file keeps them (empty: no card)."""
        return self.card.fields() if self.card else {}


def decoding_for_file(
    path: Path, inputs: list, outputs: list, metadata: dict[str, str], request: CardRequest = CardRequest()
) -> Decoding:
    """The decoding of model file ``path``, first match wins: the given card, the zoo model it
    was made from, a card file beside it, a card inside it or in its metadata file,
    recognition of its tensors and metadata; else raw outputs.
    """
    zoo = source_model_of(path)
    zoo_processor = processor_for(zoo) if request.card is None else None
    if zoo_processor is not None:
        how = f"{path.name}: decoded as zoo model {zoo}" + (" + the given thresholds" if request else "")
        return Decoding(with_thresholds(zoo_processor, request, f"{path.name} (zoo model {zoo})"), how)
    found, where = (None, "") if request.card else _card_found(path, inputs, outputs, metadata)
    card = request.apply(found)
    if card is None:
        names = ", ".join(f"{o.name} {list(o.shape)}" for o in outputs)
        return Decoding(
            None,
            f"{path.name}: raw outputs ({names}), no decoder recognised; {_raw_feed(inputs)}. "
            f"Describe the model with a card ({path.name}.card.yaml or --card, see README) to decode it",
        )
    resolved = resolve_card(card, inputs[0])
    source = request.source if request.card else where
    if request.overrides:
        source = f"{source} + the given options" if source else "the given options"
    return Decoding(CardProcessor(resolved), f"{path.name}: {source}: {resolved.describe()}", card)


def _raw_feed(inputs: list) -> str:
    raw = raw_processor(inputs[0])
    if raw is None:
        return f"its input {inputs[0].name} {list(inputs[0].shape)} is not an image"
    return f"fed as {raw.resolved.describe()}"


def _card_found(path: Path, inputs: list, outputs: list, metadata: dict[str, str]) -> tuple[ModelCard | None, str]:
    beside = card_file_beside(path)
    if beside is not None:
        return read_card(beside), f"card {beside.name}"
    meta = read_meta(path)
    if METADATA_KEY not in metadata and meta is not None and meta.card:
        return card_from_dict(meta.card, meta_path(path).name), f"card in {meta_path(path).name}"
    found = recognise(inputs, outputs, metadata)
    if found is None:
        return None, ""
    return found.card, ("card inside the model" if METADATA_KEY in metadata else f"recognised from {found.evidence}")


def file_decoding(path: Path, request: CardRequest = CardRequest()) -> Decoding:
    """``decoding_for_file`` for a file not loaded yet (opened once with its default runtime).

    The one line is logged, except when the card is the source's own, handed on by a
    command that already said it (bench building its variants).
    """
    engine = create_backend(None, path)
    decoding = decoding_for_file(path, engine.inputs, engine.outputs, engine.metadata, request)
    (logger.debug if request.source == HANDED_ON else logger.info)("%s", decoding.how)
    return decoding


# ----------------------------------------------------------------------------- naming a model


def resolve_model(model: str) -> ModelSpec | Path:
    """The zoo entry or model file that ``model`` names; a clear error when it names neither.

    A file is checked against its format here (see ``edgevision.modelfiles``), so a broken
    file is one sentence before any command starts its work.
    """
    if model in list_models():
        return get_spec(model)
    path = Path(model)
    if is_bundle(path):
        return open_bundle(path)  # its model file, every hash checked
    if path.is_file():
        check_pulled_file(path)
        return check_model_file(path)
    if path.is_dir():
        raise EdgevisionError(
            f"{model} is a folder, not a bundle (it has no bundle.json); give a model file, a bundle or a zoo name."
        )
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
    card: CardRequest = CardRequest(),
) -> Predictor:
    """A predictor for zoo model ``model`` or a model file (see the module docstring)."""
    target = resolve_model(str(model))
    if isinstance(target, Path):
        return _file_predictor(target, backend=backend, threads=threads, request=card)
    if is_pytorch_family(target):
        predictor = _pytorch_predictor(
            target, backend=backend, threads=threads, weights=weights, random_weights=random_weights
        )
    else:
        refuse_weights(target, weights, random_weights)
        predictor = target.predictor(target, pulled_dir(target.name), backend, threads)
    if card:
        predictor.processor = with_thresholds(getattr(predictor, "processor", None), card, target.name)
    return predictor


def load_workers(
    model: str, *, workers: int, threads: int | None = None, isolate: bool = False, **options
) -> list[Predictor]:
    """``workers`` predictors of ``model`` (``options`` as ``load_predictor`` takes them) for
    as many inference workers, ``threads`` (default: the usable cores) shared out among them.

    Most runtimes get one copy per worker. OpenVINO gets one compiled model with a stream per
    worker, listed once per worker and safe to call from each worker's thread: separately
    compiled copies did not run at the same time (nanodet-m, two 1-thread copies called from
    two threads: 26.6 fps together, one alone 26.7; one model with 2 streams: 51.5).

    ``isolate`` infers in worker processes instead (``edgevision.zoo.isolate``), a copy in
    each, away from this process's interpreter lock; each process is listed ``IN_FLIGHT``
    times, once per frame it holds, each entry for one thread. A copy is also loaded here
    for the model's task, classes and settings. ``close_workers`` ends the processes.
    """
    check_workers(workers)
    each = threads_per_worker(threads, workers)
    if workers > 1 and workers * each > usable_cores():
        logger.warning(
            "%d workers of %d thread(s) each, but only %d core(s) are usable: the extra ones wait for a core",
            workers,
            each,
            usable_cores(),
        )
    if isolate:
        local = load_predictor(model, threads=each, **options)
        processes: list[InferenceProcess] = []
        try:
            for _ in range(workers):
                processes.append(InferenceProcess(load_predictor, model, {**options, "threads": each}))
        except BaseException:
            for process in processes:  # none left running when a later one fails to start
                process.close()
            raise
        return [slot for process in processes for slot in process.slots(local)]
    with use_streams(workers):
        first = load_predictor(model, threads=each, **options)
    if workers > 1 and first.backends and all(b.streams == workers for b in first.backends):
        return [first] * workers
    return [first] + [load_predictor(model, threads=each, **options) for _ in range(workers - 1)]


def close_workers(predictors: Sequence[Predictor]) -> None:
    """End the worker processes behind ``predictors`` (``load_workers(isolate=True)``); others need nothing."""
    for process in worker_processes(predictors):
        process.close()


def threads_per_worker(threads: int | None, workers: int) -> int | None:
    """The threads of each of ``workers`` inference workers when ``threads`` are shared among
    them (``None``: the runtime's default for one worker, the usable cores for several).

    >>> threads_per_worker(None, 1), threads_per_worker(4, 2), threads_per_worker(1, 2)
    (None, 2, 1)
    """
    if workers == 1:
        return threads
    return max(1, (threads or usable_cores()) // workers)


THRESHOLDS = ("score_threshold", "iou_threshold")  # of a card's fields, what a zoo decoder also takes


def with_thresholds(processor: Processor | None, request: CardRequest, name: str) -> Processor | None:
    """``processor`` (a zoo model's) with the score or NMS threshold ``request`` sets; one sentence
    for any other card field, which only a model file without a decoder of its own can take."""
    if not request:
        return processor
    wanted = dict(request.overrides)
    if request.card is not None or set(wanted) - set(THRESHOLDS):
        raise EdgevisionError(
            f"{name} is a zoo model with its own decoder; of the card options only --score-threshold and "
            "--iou-threshold apply to it (a whole card is for model files)."
        )
    known = {f.name for f in fields(processor)} if is_dataclass(processor) else set()
    if missing := [k for k in wanted if k not in known]:
        raise EdgevisionError(f"{name}'s decoder has no {missing[0].replace('_', '-')} to set.")
    return replace(processor, **wanted)


def single_stage(spec: ModelSpec, path: Path, runtime: str | None, threads: int | None) -> Predictor:
    """The family's processor on ``path`` with ``runtime``: what most catalogue entries wire."""
    return SingleStagePredictor(create_backend(runtime, path, threads=threads), spec.processor())


def _file_predictor(path: Path, *, backend: str | None, threads: int | None, request: CardRequest) -> Predictor:
    meta = read_meta(path)
    runtime = backend or (meta.runtime if meta else None)
    # a bundle of a run-time setting (openvino-bf16, ncnn-fp16) runs its file with it
    precision = run_precision(path) if runtime in (None, meta.runtime if meta else None) else None
    if precision and not _runs_natively(runtime or backend_for_file(path), precision):
        logger.warning(
            "this CPU cannot run %s in %s, as its bundle asks; it runs in the runtime's default", path.name, precision
        )
        precision = None
    engine = create_backend(runtime, path, threads=threads, precision=precision)
    decoding = decoding_for_file(path, engine.inputs, engine.outputs, engine.metadata, request)
    logger.info("%s", decoding.how)
    if decoding.processor is None or decoding.processor.task == "raw":
        predictor: Predictor = RawPredictor(engine, decoding.processor)
    else:
        predictor = SingleStagePredictor(engine, decoding.processor)
    predictor.random_weights = bool(meta and meta.random_weights)
    predictor.decoding = decoding.how
    return predictor


def _runs_natively(runtime: str, precision: str) -> bool:
    cls = get_backend_class(runtime)
    return not hasattr(cls, "supports") or cls.supports(precision)


def refuse_card(spec: ModelSpec, request: CardRequest) -> None:
    """Refuse a card for a zoo model: each zoo model has its own decoder."""
    if request:
        raise EdgevisionError(f"{spec.name} is a zoo model with its own decoder; cards are for model files.")


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
    card: CardRequest = CardRequest(),
) -> SourceModel:
    """The ONNX form of zoo model or file ``model`` (converted into ``workdir`` when needed)."""
    target = resolve_model(str(model))
    if isinstance(target, Path):
        if weights is not None or random_weights:
            raise EdgevisionError("--weights and --random-weights are for PyTorch zoo models, not model files.")
        return _file_source(target, workdir, card)
    refuse_card(target, card)
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


def _file_source(path: Path, workdir: Path, request: CardRequest = CardRequest()) -> SourceModel:
    meta = read_meta(path)
    random_weights = bool(meta and meta.random_weights)
    suffix = path.suffix.lower()
    if suffix not in (".onnx", ".tflite"):
        raise EdgevisionError(f"cannot convert {path.name}: give an .onnx or .tflite file, or a zoo model name.")
    decoding = file_decoding(path, request)
    card = decoding.card_fields
    if suffix == ".onnx":
        return SourceModel(
            str(path), path, sha256_file(path), decoding.processor, random_weights=random_weights, card=card
        )
    from edgevision.conversion.tflite import tflite_to_onnx

    onnx = workdir / f"{path.stem}.onnx"
    tflite_to_onnx(path, onnx)
    return SourceModel(
        str(path),
        onnx,
        sha256_file(path),
        decoding.processor,
        original=path,
        notes=["via tf2onnx from .tflite"],
        card=card,
    )


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
