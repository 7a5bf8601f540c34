"""The ``edgevision watch`` service: many cameras, each model loaded once, inference threads shared by all.

Each camera captures on its own thread (see :mod:`edgevision.watch.camera`). The inference
threads (one by default; ``workers`` in the config) serve the cameras in turn, round-robin,
taking only frames that passed their motion gate or are keyframes, so one busy camera cannot
starve the others. A camera is served by one thread at a time, so its frames reach its
tracker in order; several threads infer several cameras' frames at once. After the model,
each camera has its own tracker and rule engine; an event is stored at once with an
annotated snapshot, and its clip follows from the clip writer's thread.

>>> service = Service(read_watch_config("watch.yaml"))    # doctest: +SKIP
>>> service.start()                                       # doctest: +SKIP
>>> [c["state"] for c in service.cameras_status()]        # doctest: +SKIP
['running', 'running']
>>> service.stop()                                        # doctest: +SKIP
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

import cv2
import numpy as np

from edgevision.annotate import draw
from edgevision.errors import EdgevisionError
from edgevision.files import disk_free
from edgevision.models.base import Predictor
from edgevision.pipeline.events import Event
from edgevision.pipeline.overlay import draw_box
from edgevision.pipeline.rules import RuleConfig, RuleEngine, labels_of
from edgevision.pipeline.run import check_run_model, model_classes, select_classes
from edgevision.pipeline.stats import percentile_ms
from edgevision.pipeline.tracking import Tracker, TrackerConfig
from edgevision.pipeline.zones import check_geometry
from edgevision.types import Frame, Prediction
from edgevision.watch.camera import Camera
from edgevision.watch.clips import ClipWriter, FinishedClip, events_named
from edgevision.watch.config import CameraConfig, WatchConfig
from edgevision.watch.store import EventStore, Message, StorageError, StoredEvent
from edgevision.zoo.assemble import load_predictor

logger = logging.getLogger(__name__)

T = TypeVar("T")
# A model name or path -> its predictor, or one predictor per inference thread (``load_workers``).
Loader = Callable[[str], "Predictor | Sequence[Predictor]"]
OnEvent = Callable[[str, Event, Frame], None]  # camera name, the event, the frame it fired on
RETAIN_EVERY = 600.0  # seconds between retention passes
FREE_EVERY = 30.0  # seconds between looks at the disk's free space (and at once when a write is refused)
TRACKS_EVERY = 2.0  # seconds between writes of the tracks seen (one commit for all of them)
JPEG_QUALITY = [cv2.IMWRITE_JPEG_QUALITY, 85]


class Outlet(Protocol):
    """Where the service hands what it sees to a publisher (MQTT); called on the inference thread, each returns at once."""

    def message(self, event: StoredEvent) -> Message:
        """The message that goes out with ``event``, kept in the store's outbox in the event's own transaction."""

    def stored(self, camera: str, event_id: int, snapshot: bytes) -> None:
        """Event ``event_id`` of ``camera`` is stored, with this annotated snapshot (JPEG)."""

    def state(self, camera: str, occupancy: dict[str, int], line_counts: dict[str, dict[str, int]]) -> None:
        """``camera``'s objects in each zone and crossings of each line, at start and whenever they change."""

    def storage(self, problem: str | None, free_bytes: int, not_stored: int) -> None:
        """Whether the store takes writes (``problem``: why not), the disk's free bytes, events refused so far;
        at start, every ``FREE_EVERY`` s and whenever the store starts or stops refusing writes."""


class RoundRobin(Generic[T]):
    """Picks the next ready item after the one picked last, so every ready item gets its turn.

    >>> turns = RoundRobin(["a", "b", "c"])
    >>> [turns.pick(lambda x: x != "b") for _ in range(4)]
    ['a', 'c', 'a', 'c']
    """

    def __init__(self, items: Sequence[T]) -> None:
        self.items = list(items)
        self._next = 0

    def pick(self, ready: Callable[[T], bool]) -> T | None:
        for k in range(len(self.items)):
            i = (self._next + k) % len(self.items)
            if ready(self.items[i]):
                self._next = i + 1
                return self.items[i]
        return None


class Analysis:
    """One camera's tracker and rule engine (made at the first frame, whose size the zones need).

    Track ids count on from ``first_track_id``, the last id stored before this run, so an id
    names one track across restarts too.
    """

    def __init__(
        self,
        name: str,
        config: CameraConfig,
        predictor: Predictor,
        *,
        first_track_id: int = 0,
        stored_counts: dict[tuple[str, str, str], int] | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.classes = model_classes(predictor, tuple(config.rules.classes))
        self.first_track_id = first_track_id
        self.tracker: Tracker | None = None
        self.engine: RuleEngine | None = None
        self.seconds: deque[float] = deque(maxlen=200)  # inference times, for p50/p95
        self.events: Counter[tuple[str, str]] = Counter()  # (zone or line, type) -> count
        self.seen: dict[int, str] = {}  # tracks seen since the last write: id -> label
        self.seen_written = 0.0
        self._line_counts: dict[str, dict[str, int]] = {ln: {"in": 0, "out": 0} for ln in config.lines}
        self.uncounted: Counter[tuple[str, str]] = Counter()  # crossings the store refused, added when it takes them
        for (_, line, direction), n in (stored_counts or {}).items():  # the store's (camera, line, direction)
            self.counted(line, direction, n)
        self.told: dict[str, int] | None = None  # the occupancy last handed to the outlet

    def update(self, frame: Frame, prediction: Prediction, *, index: int) -> tuple[Prediction, list[Event]]:
        if self.tracker is None:
            self._begin(frame)
        prediction = self.tracker.update(select_classes(prediction, self.classes), time=frame.time)
        if prediction.tracker_ids is not None and self.first_track_id:
            prediction.tracker_ids = prediction.tracker_ids + self.first_track_id
        if prediction.tracker_ids is not None:
            self.seen.update(zip(prediction.tracker_ids.tolist(), labels_of(prediction)))
        events = self.engine.update(prediction, frame=index, time=frame.captured) if self.engine else []
        return prediction, events

    def counted(self, line: str, direction: str, count: int) -> None:
        """``line`` has been crossed ``count`` times ``direction`` (``"in"`` or ``"out"``) in all."""
        self._line_counts.setdefault(line, {"in": 0, "out": 0})[direction] = count

    def line_counts(self) -> dict[str, dict[str, int]]:
        """Crossings of each line by direction: as the store keeps them, and those it has not taken yet (a copy)."""
        counts = {line: dict(c) for line, c in self._line_counts.items()}
        for (line, direction), n in self.uncounted.items():
            by_way = counts.setdefault(line, {"in": 0, "out": 0})
            by_way[direction] = by_way.get(direction, 0) + n
        return counts

    def occupancy(self) -> dict[str, int]:
        """Confirmed tracks now inside each zone."""
        return dict(self.engine.occupancy) if self.engine else dict.fromkeys(self.config.zones, 0)

    def _begin(self, frame: Frame) -> None:
        h, w = frame.image.shape[:2]
        # 10 fps until the frames' times show the real rate (see Tracker.update)
        self.tracker = Tracker(TrackerConfig(), fps=10.0)
        zones, lines = self.config.zone_objects(), self.config.line_objects()
        try:
            check_geometry(zones, lines, width=w, height=h)
        except EdgevisionError as exc:
            logger.warning("camera %s: its zones and lines are not used: %s", self.name, exc)
            return
        if zones or lines:
            self.engine = RuleEngine(zones=zones, lines=lines, config=RuleConfig(), width=w, height=h)


class Service:
    """Runs every camera of ``config``; ``loader`` makes a predictor from a model name or path.

    ``paced=False`` reads video files as fast as the model takes their frames, every one of
    them, on the file's own clock (see :class:`~edgevision.watch.camera.Camera`); ``on_event``
    is called on the inference thread with each event once it is stored. ``outlet`` (the MQTT
    link) gets each event's outbox message, its snapshot and the zone and line states.
    """

    def __init__(
        self,
        config: WatchConfig,
        *,
        loader: Loader | None = None,
        paced: bool = True,
        on_event: OnEvent | None = None,
        outlet: Outlet | None = None,
    ) -> None:
        self.config = config
        self.paced = paced
        self._on_event = on_event
        self._outlet = outlet
        self._loader = loader or load_predictor
        self.started = time.time()
        self.store: EventStore | None = None
        self.cameras: dict[str, Camera] = {}
        self._analyses: dict[str, Analysis] = {}
        self._predictors: dict[str, list[Predictor]] = {}
        self._stop = threading.Event()
        self._turns: RoundRobin[Camera] = RoundRobin([])
        self._ready = threading.Condition()  # a camera has a frame, or one was handed back; guards _busy
        self._busy: set[str] = set()  # cameras an inference thread holds now
        self.inference_threads = 0  # started by start(): the most predictors a model was loaded with
        self._threads: list[threading.Thread] = []
        self._clips: ClipWriter | None = None
        self.serving = False  # True from the end of start() to the beginning of stop()
        self.storage_problem: str | None = None  # why the store refuses writes now (a full disk ...)
        self.events_not_stored = 0
        self._look_at_disk = threading.Event()  # wakes the retention thread

    # -- life --------------------------------------------------------------------------
    def start(self) -> None:
        """Load each model once, open the store, start the cameras and the inference threads."""
        predictors = self._load_models()
        self.store = EventStore(self.config.storage.path)
        self._clips = ClipWriter(self._write_clip)
        for name, camera in self.config.cameras.items():
            predictor = predictors[self.config.model_of(name)][0]
            self._analyses[name] = Analysis(
                name,
                camera,
                predictor,
                first_track_id=self.store.last_track_id(name),
                stored_counts=self.store.line_counts(name),
            )
            self.cameras[name] = Camera(
                name, camera, on_ready=self._frame_ready, deliver=self._clips.put, paced=self.paced
            )
        self._turns = RoundRobin(list(self.cameras.values()))
        for analysis in self._analyses.values():
            self._tell(analysis, force=True)
        for camera in self.cameras.values():
            camera.start()
        threads = self.inference_threads = max(len(p) for p in predictors.values())
        for index in range(threads):
            self._spawn(f"watch-inference-{index}" if threads > 1 else "watch-inference", self._infer_loop, index)
        self._spawn("watch-retention", self._retain_loop)
        self.serving = True
        across = f" on {threads} inference threads" if threads > 1 else ""
        logger.info("watching %d camera(s)%s", len(self.cameras), across)

    def _load_models(self) -> dict[str, list[Predictor]]:
        for model in {self.config.model_of(name) for name in self.config.cameras}:
            if model not in self._predictors:
                loaded = self._loader(model)
                self._predictors[model] = [loaded] if isinstance(loaded, Predictor) else list(loaded)
                check_run_model(self._predictors[model][0], name=f"model {model}")
        return self._predictors

    def _spawn(self, name: str, target: Callable[..., None], *args) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, *, timeout: float = 4.0) -> None:
        """End every thread, write the clips still open, close the store (within about ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        self.serving = False
        self._stop.set()
        self._look_at_disk.set()
        with self._ready:
            self._ready.notify_all()
        for camera in self.cameras.values():
            camera.stop()
        for thread in [*self._threads]:
            thread.join(max(0.0, deadline - time.monotonic()))
        for camera in self.cameras.values():
            camera.join(max(0.0, deadline - time.monotonic()))
        if self._clips is not None:
            self._clips.close(timeout=max(0.5, deadline - time.monotonic()))
        if self.store is not None:
            for analysis in self._analyses.values():
                self._write_tracks(analysis)
            self.store.close()
        logger.info("stopped watching")

    # -- inference ---------------------------------------------------------------------
    def _frame_ready(self) -> None:
        with self._ready:
            self._ready.notify_all()

    def _infer_loop(self, index: int = 0) -> None:
        """Inference thread ``index``: the next camera with a frame that no other thread holds, in turn."""
        while not self._stop.is_set():
            with self._ready:
                camera = self._turns.pick(lambda c: c.name not in self._busy and c.ready)
                frame = camera.take() if camera is not None else None
                if frame is None:
                    self._ready.wait(0.1)
                    continue
                self._busy.add(camera.name)
            try:
                self._process(camera, frame, index)
            except (EdgevisionError, OSError, cv2.error) as exc:
                logger.warning("camera %s: a frame was not processed: %s", camera.name, exc)
            finally:
                with self._ready:
                    self._busy.discard(camera.name)
                    self._ready.notify_all()  # its next frame may wait for another thread

    def _process(self, camera: Camera, frame: Frame, index: int = 0) -> None:
        analysis = self._analyses[camera.name]
        predictors = self._predictors[self.config.model_of(camera.name)]
        start = time.perf_counter()
        prediction = predictors[index % len(predictors)](frame.image)
        analysis.seconds.append(time.perf_counter() - start)
        camera.inferred += 1
        prediction, events = analysis.update(frame, prediction, index=camera.inferred)
        for event in events:
            self._record(camera, frame, prediction, event)
        self._tell(analysis, force=any(e.type == "cross" for e in events))
        if time.monotonic() - analysis.seen_written >= TRACKS_EVERY:
            self._write_tracks(analysis)

    def _tell(self, analysis: Analysis, *, force: bool = False) -> None:
        """Hand the camera's zone and line states to the outlet when they changed (``force``: a line was crossed)."""
        if self._outlet is None:
            return
        occupancy = analysis.occupancy()
        if force or occupancy != analysis.told:
            analysis.told = occupancy
            self._outlet.state(analysis.name, occupancy, analysis.line_counts())

    def _write_tracks(self, analysis: Analysis) -> None:
        analysis.seen_written = time.monotonic()
        try:
            if analysis.seen:
                self.store.see_tracks(analysis.name, list(analysis.seen.items()))
                analysis.seen.clear()
        except StorageError as exc:
            self._storage_failed(exc)
        self._store_counts(analysis)

    def _store_counts(self, analysis: Analysis) -> None:
        """Add the crossings the store has not taken yet to its counts (they count live meanwhile)."""
        try:
            for (line, direction), n in list(analysis.uncounted.items()):
                stored = self.store.count_line(analysis.name, line, direction, n)
                del analysis.uncounted[line, direction]
                analysis.counted(line, direction, stored)
        except StorageError as exc:
            self._storage_failed(exc)

    def _record(self, camera: Camera, frame: Frame, prediction: Prediction, event: Event) -> None:
        """Store ``event`` with its snapshot now; its clip is finished ~2 s later, off this thread.

        When the store refuses the event (a full disk), the service goes on: the event still
        counts in the live figures, a line crossing is added to the stored count once the store
        takes writes again, and the retention thread looks for room at once."""
        analysis = self._analyses[camera.name]
        analysis.events[event.zone, event.type] += 1
        crossing = event.type == "cross" and event.direction
        if crossing:  # counted live at once; in the store with the event, or once it takes writes again
            analysis.uncounted[event.zone, event.direction] += 1
        try:
            event_id = self.store.add_event(
                camera.name,
                event.type,
                time=wall_time(frame),
                zone=event.zone,
                track_id=event.track_id,
                label=event.label,
                score=event.score,
                box=event.box,
                direction=event.direction,
                dwell_seconds=event.dwell_seconds,
                outbox=self._outlet.message if self._outlet is not None else None,
            )
        except StorageError as exc:
            self.events_not_stored += 1
            self._storage_failed(exc)
            return
        if crossing:
            self._store_counts(analysis)
        image = draw(frame.image, prediction)
        draw_box(image, event.box)
        snapshot = _jpeg(image)
        try:
            self.store.add_snapshot(event_id, snapshot)
            self._storage_works()
        except StorageError as exc:
            self._storage_failed(exc)
        if self._outlet is not None:
            self._outlet.stored(camera.name, event_id, snapshot)
        camera.clips.start(event_id)
        logger.info(
            "event %d: %s %s %s #%d on %s", event_id, event.type, event.zone, event.label, event.track_id, camera.name
        )
        if self._on_event is not None:
            self._on_event(camera.name, event, frame)

    def _write_clip(self, clip: FinishedClip, *, hurry: threading.Event | None = None) -> None:
        try:
            self.store.add_clip(clip.event_ids, clip.frames, clip.fps, offsets=clip.offsets, hurry=hurry)
        except StorageError as exc:
            self._storage_failed(exc)
            logger.info("the clip of %s was not kept: the store refuses writes", events_named(clip.event_ids))
        except sqlite3.ProgrammingError:  # the store was closed while this clip was encoded
            if self.serving:
                raise
            logger.warning(
                "the clip of %s was not kept: the service stopped while it was written", events_named(clip.event_ids)
            )

    # -- storage -----------------------------------------------------------------------
    def _retain_loop(self) -> None:
        """Retention every ``RETAIN_EVERY`` s; the disk's free space every ``FREE_EVERY`` s, and at once
        when a write was refused."""
        storage, retained, short = self.config.storage, -RETAIN_EVERY, False
        while not self._stop.is_set():
            try:
                if time.monotonic() - retained >= RETAIN_EVERY:
                    removed = self.store.retain(storage.retain_days, storage.max_bytes)
                    retained = time.monotonic()
                    if removed:
                        logger.info("removed %d old event(s) to keep within the storage limits", removed)
                removed, enough = self.store.free_space(storage.min_free_bytes)
                if removed:
                    logger.warning(
                        "the disk of %s had less than %g GB free: removed the %d oldest event(s)",
                        storage.path,
                        storage.min_free_gb,
                        removed,
                    )
                if not enough and not short:
                    logger.warning(
                        "the disk of %s has %.2f GB free, less than storage.min_free_gb (%g), and deleting "
                        "every event would not make the room: other files fill it",
                        storage.path,
                        disk_free(storage.path) / 1e9,
                        storage.min_free_gb,
                    )
                short = not enough
            except StorageError as exc:
                self._storage_failed(exc)
            self._tell_storage()
            self._look_at_disk.wait(FREE_EVERY)
            self._look_at_disk.clear()

    def _storage_failed(self, exc: StorageError) -> None:
        """The store refused a write: one warning until it takes writes again; retention looks for room."""
        first = self.storage_problem is None
        self.storage_problem = str(exc)
        if first:
            logger.warning("%s", exc)
            self._tell_storage()
        if exc.full:
            self._look_at_disk.set()

    def _tell_storage(self) -> None:
        if self._outlet is not None:
            free = disk_free(self.config.storage.path)
            self._outlet.storage(self.storage_problem, free, self.events_not_stored)

    def _storage_works(self) -> None:
        if self.storage_problem is not None:
            self.storage_problem = None
            self._tell_storage()
            logger.info(
                "events are stored again (%d were not stored while the store refused writes)", self.events_not_stored
            )

    # -- what the web API and the metrics show -----------------------------------------
    def status(self) -> dict:
        """The service as a whole: inference threads, the clip writer, storage, and MQTT messages not yet sent."""
        clips = self._clips
        return {
            "inference_threads": self.inference_threads,
            "clips_waiting": clips.waiting if clips else 0,
            "clips_written": clips.written if clips else 0,
            "clips_fast_codec": clips.hurried if clips else 0,
            "storage_bytes": self.store.media_bytes(),
            "storage_free_bytes": disk_free(self.config.storage.path),
            "storage_problem": self.storage_problem,
            "events_not_stored": self.events_not_stored,
            "mqtt_unsent": self.store.unsent() if self._outlet is not None else None,
        }

    def cameras_status(self) -> list[dict]:
        """Per camera: state, frame rates, counters, motion fraction, inference times, events per rule."""
        return [self._status(camera) for camera in self.cameras.values()]

    def _status(self, camera: Camera) -> dict:
        analysis = self._analyses[camera.name]
        seconds = list(analysis.seconds)
        return {
            "name": camera.name,
            "state": camera.state,
            "fps": round(camera.recent_fps(), 2),
            "captured_frames": camera.captured,
            "inferred_frames": camera.inferred,
            "dropped_frames": camera.dropped,
            "motion_fraction": round(camera.gate.motion_fraction, 3),
            "inference_ms_p50": percentile_ms(seconds, 50),
            "inference_ms_p95": percentile_ms(seconds, 95),
            "events": [{"rule": rule, "type": kind, "count": n} for (rule, kind), n in analysis.events.items()],
            "occupancy": analysis.occupancy(),
            "line_counts": analysis.line_counts(),
        }

    def latest_jpeg(self, name: str) -> bytes | None:
        """The last frame of camera ``name`` as JPEG (None before its first frame)."""
        frame = self.cameras[name].latest()
        return None if frame is None else _jpeg(frame.image)


def wall_time(frame: Frame) -> float:
    """The moment ``frame`` was captured, in seconds since the epoch (``Frame.captured`` is perf_counter time)."""
    return time.time() - (time.perf_counter() - frame.captured)


def _jpeg(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", image, JPEG_QUALITY)
    if not ok:
        raise EdgevisionError("could not encode a frame as JPEG.")
    return data.tobytes()
