"""Run a model on a live or recorded source: track, apply zone and line rules, write and serve.

Four stages run on their own threads joined by bounded queues: capture, inference
(pre-processing, model, decoding), analysis (tracking, rules, events) and output
(drawing, video, JSON lines, live stream). Live sources (cameras, streams, ``realtime``
files) keep only the freshest frame in front of inference and count the ones dropped;
files otherwise give every frame (or every ``stride``-th).

Given several copies of a model, inference runs one worker per copy on successive frames
and hands them on in order. On a small CPU that is often more frames a second than one copy
with all the threads: a small model's layers do not split well over threads, and the
other stages' work fits between a one-thread worker's frames (see the README's pipeline
section for the numbers).

>>> from edgevision.zoo.assemble import load_predictor
>>> from edgevision.pipeline.run import RunConfig, RunOutputs, run_pipeline
>>> from edgevision.pipeline.zones import parse_line, parse_zone
>>> config = RunConfig(zones=(parse_zone("lawn:0.1,0.6,0.5,0.6,0.5,0.95,0.1,0.95"),),
...                    lines=(parse_line("path:0,0.45,1,0.45"),))
>>> summary = run_pipeline(load_predictor("nanodet-m", threads=2), "vtest.avi", config,
...                        RunOutputs(video="out.mp4", events="events.jsonl"))   # doctest: +SKIP
>>> summary.fps, summary.latency_p95_ms, summary.events                           # doctest: +SKIP
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgevision.annotate import draw, draw_banner
from edgevision.checks import JSON, annotated_output, json_lines_output, media_input, output_file, output_folder
from edgevision.errors import EdgevisionError
from edgevision.files import write_atomic
from edgevision.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES, open_video
from edgevision.models.base import Predictor
from edgevision.pipeline.capture import (
    CaptureSource,
    LiveSource,
    StreamConfig,
    open_source,
    source_kind,
)
from edgevision.pipeline.events import Event, EventLog
from edgevision.pipeline.overlay import draw_box, draw_legend, draw_line, draw_zone, legend_rows
from edgevision.pipeline.predict import (
    RANDOM_WEIGHTS_BANNER,
    frame_record,
    random_weights_record,
)
from edgevision.pipeline.rules import RuleConfig, RuleEngine
from edgevision.pipeline.sinks import ImageFolderSink, JsonLinesSink, VideoSink, close_all
from edgevision.pipeline.stages import Pipe, StageGroup
from edgevision.pipeline.stats import Progress, RunStats, RunSummary
from edgevision.pipeline.stream import MjpegServer
from edgevision.pipeline.tracking import Tracker, TrackerConfig
from edgevision.pipeline.zones import Line, Zone, check_geometry
from edgevision.types import Detections, Frame, Poses, Prediction
from edgevision.zoo.isolate import count_workers, worker_processes

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunConfig:
    """What a run looks for and how it paces itself.

    ``classes``: class names to track and fire events for (None: all). ``realtime``: read a
    file at its own frame rate and drop frames like a camera. ``max_frames`` / ``duration``
    (source seconds) end a run early, e.g. on a live stream.
    """

    zones: tuple[Zone, ...] = ()
    lines: tuple[Line, ...] = ()
    classes: tuple[str, ...] | None = ("person",)
    stride: int = 1
    realtime: bool = False
    max_frames: int | None = None
    duration: float | None = None
    track: bool = True
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    rules: RuleConfig = field(default_factory=RuleConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    queue_size: int = 2
    progress_every: float = 0.5

    def __post_init__(self) -> None:
        if self.stride < 1:
            raise EdgevisionError(f"stride must be 1 or more, got {self.stride}.")


@dataclass(frozen=True)
class RunOutputs:
    """Where a run writes: annotated video (.mp4/.avi) or image folder, detections, events, stream, stats."""

    video: Path | str | None = None
    json_lines: str | None = None
    events: Path | str | None = None
    serve_port: int | None = None
    stats: Path | str | None = None
    snapshots: bool = True


def check_run(source: str | CaptureSource, outputs: RunOutputs) -> None:
    """Raise, before any work, when a file ``source`` cannot be read or an output cannot be written."""
    if isinstance(source, str) and source_kind(source) in ("video", "images"):
        media_input(source)
        if source_kind(source) == "video":
            open_video(source).release()  # one OpenCV cannot decode is refused before the model loads
    if outputs.video is not None:
        annotated_output(outputs.video, video=Path(outputs.video).suffix.lower() in VIDEO_SUFFIXES)
    json_lines_output(outputs.json_lines)
    if outputs.events is not None:
        events = Path(outputs.events)
        json_lines_output(events, what="the events log")
        if outputs.snapshots:
            output_folder(events.parent / f"{events.stem}-snapshots", what="the event snapshots")
    if outputs.stats is not None:
        output_file(outputs.stats, suffixes=JSON, what="the stats file")


def check_run_model(predictor: Predictor, *, name: str = "the model") -> None:
    """Raise unless ``predictor`` finds objects (boxes or poses) that a run can track and count."""
    if predictor.task not in ("detection", "pose"):
        raise EdgevisionError(
            f"{name} gives raw outputs, not boxes or poses, and run needs a detector or pose model; "
            "describe its outputs with a model card (--card FILE, or --decoder; see the README), "
            "or pick one from `edgevision zoo list`."
        )


BACKGROUND = "???"  # the label map's name of the background class, never reported


def model_classes(predictor: Predictor, classes: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """``classes`` spelt as the model spells them (any case); one sentence naming the known ones
    when the model finds none of a class. Unchanged when the model's classes are unknown."""
    known = tuple(name for name in predictor.class_names if name != BACKGROUND)
    if classes is None or not known:
        return classes
    by_lower = {name.lower(): name for name in known}
    unknown = [name for name in classes if name.lower() not in by_lower]
    if unknown:
        raise EdgevisionError(
            f"the model finds no {', '.join(repr(name) for name in unknown)}; give --classes from: "
            f"{', '.join(known)} (or 'all')."
        )
    return tuple(by_lower[name.lower()] for name in classes)


def select_classes(prediction: Prediction, classes: tuple[str, ...] | None) -> Prediction:
    """Only the objects of ``classes`` (poses count as ``person``); everything when None."""
    if classes is None:
        return prediction
    if isinstance(prediction, Detections):
        return prediction[np.array([prediction.label(i) in classes for i in range(len(prediction))], dtype=bool)]
    if isinstance(prediction, Poses) and "person" not in classes:
        return prediction[np.zeros(len(prediction), dtype=bool)]
    return prediction


def tracked_record(frame: Frame, prediction: Prediction) -> dict:
    """The JSON-lines record of a frame, with source time and track ids."""
    record = {**frame_record(frame, prediction), "time": round(frame.time, 3)}
    ids = getattr(prediction, "tracker_ids", None)
    if ids is not None:
        for obj, track_id in zip(record["objects"], ids.tolist()):
            obj["track_id"] = track_id
    return record


def frame_image_name(frame: Frame) -> str:
    """The file a frame is written as into an image folder: its own name when it is an image,
    else ``<video or stream stem>-<frame index>.jpg``."""
    source = Path(frame.source or "frame")
    if source.suffix.lower() in IMAGE_SUFFIXES:
        return source.name
    return f"{source.stem or 'frame'}-{frame.index:06d}.jpg"


class _Outputs:
    """The sinks of one run, opened lazily at the first frame's size."""

    def __init__(self, outputs: RunOutputs, *, fps: float, title: str) -> None:
        self.spec = outputs
        self.video = self.json = self.events = self.server = None
        try:  # the port first: it is the one most likely to be refused
            self.server = MjpegServer(port=outputs.serve_port, title=title) if outputs.serve_port is not None else None
            self.video = self._open_video(outputs.video, fps)
            self.json = JsonLinesSink(outputs.json_lines) if outputs.json_lines else None
            self.events = EventLog(outputs.events, snapshots=outputs.snapshots) if outputs.events else None
        except BaseException:
            self.close(keep=False)  # nothing half-made stays behind
            raise

    @staticmethod
    def _open_video(path, fps: float):
        if path is None:
            return None
        path = Path(path)
        return VideoSink(path, fps) if path.suffix.lower() in (".mp4", ".avi") else ImageFolderSink(path)

    @property
    def draws(self) -> bool:
        return self.video is not None or self.server is not None

    def write(self, frame: Frame, image: np.ndarray | None, record: dict | None) -> None:
        if image is not None and self.video is not None:
            if isinstance(self.video, VideoSink):
                self.video.write(image)
            else:
                self.video.write(image, frame_image_name(frame))
        if record is not None:
            self.json.write(record)
        if image is not None and self.server is not None:
            self.server.publish(image)

    def where(self) -> dict[str, str]:
        found = {"video": self.spec.video, "json": self.spec.json_lines, "events": self.spec.events}
        out = {k: str(v) for k, v in found.items() if v is not None}
        if self.server is not None:
            out["stream"] = self.server.url
        return out

    def close(self, *, keep: bool = True) -> None:
        """Finish every output (``keep``), or remove what this run made of them."""
        try:
            close_all((self.video, self.json, self.events), keep=keep)
        finally:
            if self.server is not None:
                self.server.close()


class _Run:
    """The state one run's stages share."""

    def __init__(
        self, predictors: Sequence[Predictor], capture: CaptureSource, config: RunConfig, first: Frame
    ) -> None:
        self.predictors = tuple(predictors)
        self.predictor = predictor = self.predictors[0]
        self.capture = capture
        self.config = config
        self.stats = RunStats()
        h, w = first.image.shape[:2]
        fps = capture.fps / config.stride
        self.tracker = (
            Tracker(config.tracker, fps=fps) if config.track and predictor.task in ("detection", "pose") else None
        )
        self.engine = None
        if self.tracker is not None and (config.zones or config.lines):
            self.engine = RuleEngine(zones=config.zones, lines=config.lines, config=config.rules, width=w, height=h)
        self.polygons = [z.pixels(width=w, height=h) for z in config.zones]
        self.segments = [ln.pixels(width=w, height=h) for ln in config.lines]
        self.stopping = threading.Event()
        self.stopped_by: str | None = None  # the signal that ended the run early
        self.on_event: Callable[[dict], None] | None = None
        self.outputs: _Outputs | None = None

    # -- capture ------------------------------------------------------------------------
    def frames(self, first: Frame) -> Iterator[Frame]:
        """Frames to process: stride applied, paced in real time when asked, limits honoured."""
        config, count, start = self.config, 0, time.perf_counter()
        frame = first
        while frame is not None and not self.stopping.is_set():
            if frame.index % config.stride == 0:
                if config.realtime:
                    self._wait_until(start + frame.time - first.time)
                    frame.captured = time.perf_counter()
                yield frame
                count += 1
                if self._limit_reached(count, frame.time - first.time):
                    return
            frame = self.capture.read()

    def _wait_until(self, moment: float) -> None:
        delay = moment - time.perf_counter()
        if delay > 0:
            self.stopping.wait(delay)

    def _limit_reached(self, count: int, elapsed: float) -> bool:
        config = self.config
        return (config.max_frames is not None and count >= config.max_frames) or (
            config.duration is not None and elapsed >= config.duration
        )

    # -- inference ----------------------------------------------------------------------
    def inference_workers(self) -> list[Callable[[Frame], tuple[Frame, Prediction]]]:
        """One inference function per worker. A copy listed once is only ever called from its
        worker's thread; one listed several times (OpenVINO with streams) is safe to call from each."""
        return [functools.partial(self._infer, predictor) for predictor in self.predictors]

    def _infer(self, predictor: Predictor, frame: Frame) -> tuple[Frame, Prediction]:
        start = time.perf_counter()
        prediction = predictor(frame.image)
        # a worker process times its own inference: here, the wait would include the frame
        # it was inferring for another slot
        seconds = getattr(predictor, "inferred_in", None)
        self.stats.add_stage("inference", time.perf_counter() - start if seconds is None else seconds)
        return frame, prediction

    # -- analysis -----------------------------------------------------------------------
    def analyse(self, item: tuple[Frame, Prediction]) -> tuple[Frame, Prediction, list[Event]]:
        frame, prediction = item
        start = time.perf_counter()
        if self.tracker is not None:
            prediction = self.tracker.update(select_classes(prediction, self.config.classes), time=frame.time)
        events = self.engine.update(prediction, frame=frame.index, time=frame.time) if self.engine else []
        for event in events:
            self._emit(event, frame, prediction)
        self.stats.add_stage("tracking", time.perf_counter() - start)
        return frame, prediction, events

    def _emit(self, event: Event, frame: Frame, prediction: Prediction) -> None:
        self.stats.add_event(event.type, event.zone)
        log = self.outputs.events if self.outputs else None
        if log is not None:
            snapshot = self.render(frame, prediction) if log.snapshot_dir is not None else None
            if snapshot is not None:
                draw_box(snapshot, event.box)
            record = log.write(event, snapshot=snapshot)
        else:
            record = event.to_record()
        logger.info("event: %s %s #%d %s at %.1f s", event.type, event.zone, event.track_id, event.label, event.time)
        if self.on_event is not None:
            self.on_event(record)

    # -- output -------------------------------------------------------------------------
    def render(self, frame: Frame, prediction: Prediction, *, in_place: bool = False) -> np.ndarray:
        """The annotated frame: objects with track ids, zones with occupancy, lines with counts
        (drawn on the frame's own image with ``in_place``, once nothing else will read it)."""
        image = draw(frame.image, prediction, in_place=in_place)
        occupancy = self.engine.occupancy if self.engine else {}
        crossings = self.engine.crossings if self.engine else {}
        for zone, polygon in zip(self.config.zones, self.polygons):
            draw_zone(image, zone.name, polygon, occupied=occupancy.get(zone.name, 0))
        for line, segment in zip(self.config.lines, self.segments):
            draw_line(image, line.name, segment, crossings.get(line.name, {}))
        zones = {zone.name: occupancy.get(zone.name, 0) for zone in self.config.zones}
        draw_legend(image, legend_rows(zones, {line.name: crossings.get(line.name, {}) for line in self.config.lines}))
        return draw_banner(image, RANDOM_WEIGHTS_BANNER) if self.predictor.random_weights else image

    def output(self, item: tuple[Frame, Prediction, list[Event]]) -> None:
        frame, prediction, _ = item
        start = time.perf_counter()
        # the last stage: nothing reads the frame's pixels after this, so they are drawn on
        image = self.render(frame, prediction, in_place=True) if self.outputs.draws else None
        record = None
        if self.outputs.json is not None:
            record = tracked_record(frame, prediction)
            record = random_weights_record(record) if self.predictor.random_weights else record
        self.outputs.write(frame, image, record)
        self.stats.add_stage("output", time.perf_counter() - start)
        self.stats.frame_done(frame.captured)

    def sync_counters(self, pipe: Pipe) -> None:
        self.stats.dropped = pipe.dropped
        self.stats.corrupt = self.capture.corrupt
        self.stats.reconnects = self.capture.reconnects


def _first_frame(capture: CaptureSource) -> Frame:
    first = capture.read()
    if first is None:
        raise EdgevisionError(f"{capture.name} gave no frames.")
    return first


def run_pipeline(
    predictor: Predictor | Sequence[Predictor],
    source: str | CaptureSource,
    config: RunConfig | None = None,
    outputs: RunOutputs | None = None,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    on_event: Callable[[dict], None] | None = None,
    stop: threading.Event | None = None,
) -> RunSummary:
    """Run ``predictor`` over ``source`` with tracking, rules and outputs; return the summary.

    ``predictor`` may be several copies of one model (``edgevision.zoo.assemble.load_workers``,
    ``edgevision.api.load(workers=)``): each then infers every n-th frame on its own thread,
    and the frames go on in order.

    ``on_progress`` is called about every ``config.progress_every`` seconds from the calling
    thread; ``on_event`` with each event record as it is written. Setting ``stop`` (or
    Ctrl-C, or another stop signal inside ``edgevision.signals.stop_on_signals``) ends the run
    cleanly after the frames already captured; a second Ctrl-C aborts them, and the outputs
    still hold every frame written so far.
    """
    config = config or RunConfig()
    outputs = outputs or RunOutputs()
    predictors = (predictor,) if isinstance(predictor, Predictor) else tuple(predictor)
    if not predictors:
        raise EdgevisionError("run_pipeline needs a model: got an empty list of copies.")
    predictor = predictors[0]
    check_run(source, outputs)
    check_run_model(predictor)
    config = replace(config, classes=model_classes(predictor, config.classes))
    capture = open_source(source, stream=config.stream) if isinstance(source, str) else source
    try:
        first = _first_frame(capture)
        h, w = first.image.shape[:2]
        check_geometry(config.zones, config.lines, width=w, height=h)
        run = _Run(predictors, capture, config, first)
        run.on_event = on_event
        run.outputs = _Outputs(outputs, fps=capture.fps / config.stride, title=capture.name)
        try:
            _run_stages(run, first, stop=stop, on_progress=on_progress)
        finally:
            run.outputs.close()
        summary = run.stats.summary(source=capture.name, stride=config.stride, outputs=run.outputs.where())
        summary.stopped_by = run.stopped_by
        summary.workers = count_workers(predictors)
        summary.isolated = bool(worker_processes(predictors))
    finally:
        capture.close()
    if outputs.stats is not None:
        _write_json(Path(outputs.stats), summary.to_dict())
    return summary


def _run_stages(run: _Run, first: Frame, *, stop: threading.Event | None, on_progress) -> None:
    live = run.capture.live or run.config.realtime
    captured = Pipe(1 if live else run.config.queue_size, drop_oldest=live)
    inferred, analysed = Pipe(run.config.queue_size), Pipe(run.config.queue_size)
    group = StageGroup()
    group.produce("capture", run.frames(first), captured)
    group.parallel_stage("inference", run.inference_workers(), captured, inferred)
    group.stage("analysis", run.analyse, inferred, analysed)
    group.stage("output", run.output, analysed, None)
    last = [time.perf_counter()]

    def poll() -> None:
        if stop is not None and stop.is_set():
            _request_stop(run)
        run.sync_counters(captured)
        if on_progress is not None and time.perf_counter() - last[0] >= run.config.progress_every:
            last[0] = time.perf_counter()
            on_progress(run.stats.progress())

    try:
        try:
            group.join(poll=poll, every=0.1)
        except KeyboardInterrupt as interrupt:
            run.stopped_by = getattr(interrupt, "name", "SIGINT")
            again = "Ctrl-C" if run.stopped_by == "SIGINT" else run.stopped_by
            logger.warning(
                "stopping on %s: finishing the frames already captured (%s again to abort)", run.stopped_by, again
            )
            _request_stop(run)
            group.join(poll=poll, every=0.1)
    finally:
        group.stop()  # after an abort or an error: no stage may still write when the outputs close
        run.sync_counters(captured)


def _request_stop(run: _Run) -> None:
    run.stopping.set()
    if isinstance(run.capture, LiveSource):
        run.capture.stop()


def _write_json(path: Path, data: dict) -> None:
    write_atomic(path, (json.dumps(data, indent=2) + "\n").encode())


__all__ = ["Progress", "RunConfig", "RunOutputs", "RunSummary", "check_run_model", "run_pipeline", "select_classes"]
