"""Inference in a process of its own, so it never waits for the rest of a run's interpreter lock.

Python runs one thread's bytecode at a time. In ``run``, tracking, rules, drawing and the
JSON lines are Python between native calls; each time inference comes back from the runtime
(and between the native calls of its own pre-processing and decoding) it may wait for the
lock they hold. On nanodet-m with one inference thread that wait was about a millisecond a
frame: in the same rounds the pipeline ran 0.92-0.98x the model alone with inference in its
own thread and 0.95-0.98x with it in a process of its own (the README's pipeline section).

A worker process loads its own copy of the model with the same options. Frames reach it
through shared memory (one block per frame in flight, grown when a frame is larger),
predictions come back pickled. Each process takes two frames at once: while it infers one,
the next is already copied in, so it never idles while the parent hands a result on.
Python's ``concurrent.futures`` pickles every argument through one queue, a copy of each
1.3 MB frame more, and has no frames-in-flight per process, so this is written here.

>>> from edgevision.zoo.assemble import load_predictor
>>> worker = InferenceProcess(load_predictor, "nanodet-m", {"threads": 1})   # doctest: +SKIP
>>> slots = worker.slots(load_predictor("nanodet-m", threads=1))              # doctest: +SKIP
>>> slots[0](image)                                                           # doctest: +SKIP
>>> worker.close()                                                            # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection, wait
from multiprocessing.shared_memory import SharedMemory

import numpy as np

from edgevision.backends import current_device, use_device
from edgevision.errors import EdgevisionError
from edgevision.models.base import Predictor
from edgevision.types import Prediction

logger = logging.getLogger(__name__)

IN_FLIGHT = 2  # frames a process holds at once: one inferred, the next copied in
MAX_RESTARTS, RESTART_WINDOW = 3, 600.0  # a process that dies this often in this many seconds ends the run
START_TIMEOUT = 300.0  # seconds a process may take to import its runtime and load the model


class InferenceProcess:
    """One process holding one copy of a model, fed ``IN_FLIGHT`` frames at a time.

    ``load(model, **options)`` builds the copy inside the process (a module-level function:
    it goes there pickled, by name); the OpenVINO device chosen with ``use_device`` goes along.

    The process is a plain ``python -c`` that imports this module, not a ``multiprocessing``
    child: the ``spawn`` start method runs the caller's main script again in the child, which
    a script without an ``if __name__ == "__main__":`` guard cannot survive, and ``fork``
    would copy the runtimes' thread pools half-made. It ignores Ctrl-C and stop signals, so
    that a run stopping cleanly can still infer the frames it has, and ends when its
    connections close, which they do when the parent ends for any reason.

    A process that dies (a runtime that crashes, the kernel's out-of-memory killer) is
    started again and the frames it held are sent again, so a camera run for months survives
    it; one that dies ``MAX_RESTARTS`` times within ``RESTART_WINDOW`` seconds ends the run.
    """

    def __init__(self, load: Callable[..., Predictor], model: str, options: dict) -> None:
        self.model = model
        self._setup = (load, model, options, current_device())
        self._lock = threading.Lock()
        self._closed = False
        self._restarts: list[float] = []  # monotonic times of the restarts
        self.generation = 0  # how many times the process was started again
        self._running: list = []  # [the process, its connections], for the finalizer
        weakref.finalize(self, _stop_running, self._running)
        self._start()

    def _start(self) -> None:
        pairs = [multiprocessing.Pipe() for _ in range(IN_FLIGHT)]
        self._conns = [parent for parent, _ in pairs]
        fds = [child.fileno() for _, child in pairs]
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from edgevision.zoo.isolate import main; main()", *map(str, fds)],
            pass_fds=fds,
            stdin=subprocess.DEVNULL,
            stdout=2,  # a runtime's chatter goes to stderr, never into JSON the parent writes to stdout
        )
        for _, child in pairs:
            child.close()
        self._running[:] = [self.process, self._conns]
        with contextlib.suppress(OSError):  # it ended already: _ready says with which exit code
            self._conns[0].send(self._setup)
        self._ready()

    def _ready(self) -> None:
        first = self._conns[0]
        try:
            if not first.poll(START_TIMEOUT):
                raise EdgevisionError(
                    f"the inference process for {self.model} did not start within {START_TIMEOUT:g} s."
                )
            status, detail = first.recv()
        except EOFError:
            status, detail = "error", f"it ended with exit code {self._exitcode()}"
        except EdgevisionError:
            _stop(self.process, self._conns)
            raise
        if status != "ready":
            _stop(self.process, self._conns)
            raise EdgevisionError(f"the inference process could not load {self.model}: {detail}")

    def slots(self, local: Predictor) -> list[_Slot]:
        """One predictor per frame in flight, each for one thread, all inferring in this process.

        ``local`` (the same model loaded here) answers for everything but inference: its
        task, classes, backends and settings.
        """
        return [_Slot(self, index, local) for index in range(IN_FLIGHT)]

    def connection(self, index: int) -> tuple[int, Connection]:
        """The ``index``-th connection to the process now running, with its generation."""
        if self._closed:
            raise self._closed_error()
        with self._lock:
            return self.generation, self._conns[index]

    def revive(self, generation: int) -> None:
        """Start the process again after it died in ``generation`` (once, whichever slot asks
        first); raise when it died too often, or was closed."""
        with self._lock:
            if self._closed:
                raise self._closed_error()
            if generation != self.generation:
                return  # another slot started it again already
            error = self.lost()
            now = time.monotonic()
            self._restarts = [t for t in self._restarts if now - t < RESTART_WINDOW]
            if len(self._restarts) >= MAX_RESTARTS:
                raise error
            logger.warning("%s; starting it again", str(error).split(";")[0])
            _stop(self.process, self._conns)
            self._restarts.append(now)
            self.generation += 1
            self._start()

    def _closed_error(self) -> EdgevisionError:
        return EdgevisionError(f"{self.model}'s inference processes were closed; load the model again.")

    def _exitcode(self) -> int | None:
        try:
            return self.process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            return None

    def lost(self) -> EdgevisionError:
        """The error for a process that ended in the middle of a run."""
        return EdgevisionError(
            f"the inference process for {self.model} ended unexpectedly (exit code {self._exitcode()}); "
            "the runtime crashed or ran out of memory."
        )

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Let the process finish its frame and end; kill it after 5 s."""
        with self._lock:
            if not self._closed:
                self._closed = True
                _stop(self.process, self._conns)


def _stop_running(running: list) -> None:
    if running:
        _stop(*running)


def _stop(process: subprocess.Popen, conns: list[Connection]) -> None:
    for conn in conns:
        with contextlib.suppress(OSError, ValueError):  # already ended or closed
            conn.send(None)
    try:
        process.wait(timeout=5.0)
    except subprocess.TimeoutExpired:
        process.kill()  # it ignores SIGTERM
        process.wait()
    for conn in conns:
        conn.close()


class _Slot(Predictor):
    """One frame in flight to an ``InferenceProcess``: calls from several threads take turns."""

    def __init__(self, owner: InferenceProcess, index: int, local: Predictor) -> None:
        self.process = owner
        self.index = index
        self.local = local
        self.task = local.task
        self.backends = local.backends
        self.random_weights = local.random_weights
        self.decoding = local.decoding
        self.inferred_in: float | None = None  # seconds the process took for the last frame
        self._blocks: list[SharedMemory] = []  # the one shared block frames go through
        self._turn = threading.Lock()  # one frame at a time through the block and the connection
        weakref.finalize(self, _release, self._blocks)

    def __getattr__(self, name: str):  # the processor, a card, anything else the local copy has
        if name == "local":
            raise AttributeError(name)
        return getattr(self.local, name)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.local.class_names

    def __call__(self, image: np.ndarray) -> Prediction:
        with self._turn:
            return self._infer(np.ascontiguousarray(image))

    def _infer(self, image: np.ndarray) -> Prediction:
        memory = self._block(image.nbytes)
        np.ndarray(image.shape, image.dtype, buffer=memory.buf)[...] = image
        for attempt in range(2):  # a process that died is started again once, and the frame sent again
            generation, conn = self.process.connection(self.index)
            try:
                conn.send((memory.name, image.shape, image.dtype.str))
                status, value, self.inferred_in = conn.recv()
                break
            except (EOFError, OSError):
                if attempt:
                    raise self.process.lost() from None
                self.process.revive(generation)
        if status != "ok":
            raise EdgevisionError(f"inference failed in its process: {value}")
        return value

    def _block(self, size: int) -> SharedMemory:
        """This slot's shared block, replaced by a larger one when a frame outgrows it."""
        if not self._blocks or self._blocks[0].size < size:
            _release(self._blocks)
            self._blocks.append(SharedMemory(create=True, size=max(size, 1)))
        return self._blocks[0]


def worker_process(predictor: Predictor) -> InferenceProcess | None:
    """The process ``predictor`` infers in, or None when it infers in this one."""
    return predictor.process if isinstance(predictor, _Slot) else None


def worker_processes(predictors) -> list[InferenceProcess]:
    """The processes ``predictors`` infer in, each once (a process is listed once per slot)."""
    found = {id(w): w for w in map(worker_process, predictors) if w is not None}
    return list(found.values())


def count_workers(predictors) -> int:
    """Inference workers among ``predictors``: processes, or else one per entry (an OpenVINO
    model with streams is listed once per stream)."""
    return len(worker_processes(predictors)) or len(predictors)


def _release(blocks: list[SharedMemory]) -> None:
    """Close and remove ``blocks`` (emptied): a process's memory is never left behind."""
    for block in blocks:
        try:
            block.close()
            block.unlink()
        except (FileNotFoundError, BufferError):  # removed already, or a view of it still open
            pass
    blocks.clear()


# ----------------------------------------------------------------------------- the process


def main() -> None:
    """The worker process's entry: its connections are the file descriptors in ``sys.argv``."""
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):  # the parent's to act on: it finishes its run, then ends us
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    conns = [Connection(int(fd)) for fd in sys.argv[1:]]
    try:
        load, model, options, device = conns[0].recv()
    except EOFError:
        return
    _serve(load, model, options, device, conns)


def _serve(load: Callable[..., Predictor], model: str, options: dict, device, conns: list[Connection]) -> None:
    """Load the model, then infer every frame a connection sends until every connection ends."""
    try:
        with use_device(device):
            predictor = load(model, **options)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent as one sentence
        conns[0].send(("error", str(exc) or type(exc).__name__))
        return
    conns[0].send(("ready", ""))
    blocks: dict[int, SharedMemory] = {}  # per connection: the block its frames arrive in
    live = list(conns)
    while live:
        for conn in wait(live):
            request = _receive(conn)
            if request is None:
                live.remove(conn)
                continue
            try:
                conn.send(_infer(predictor, _image(blocks, id(conn), *request)))
            except OSError:  # the parent ended while this frame was inferred
                live.remove(conn)
    for block in blocks.values():
        block.close()


def _receive(conn: Connection):
    try:
        return conn.recv()
    except EOFError:  # the parent ended
        return None


def _image(blocks: dict[int, SharedMemory], key: int, name: str, shape: tuple, dtype: str) -> np.ndarray:
    block = blocks.get(key)
    if block is None or block.name.lstrip("/") != name.lstrip("/"):
        if block is not None:
            block.close()
        block = blocks[key] = _attach(name)
    return np.ndarray(shape, np.dtype(dtype), buffer=block.buf)


def _attach(name: str) -> SharedMemory:
    """The parent's block ``name``, left for the parent to remove."""
    if sys.version_info >= (3, 13):
        return SharedMemory(name=name, track=False)
    # Before 3.13 attaching registers the block with a resource tracker, a process started
    # for it here, which would remove the block when this process ends; the parent owns it.
    register = resource_tracker.register
    resource_tracker.register = lambda *_: None
    try:
        return SharedMemory(name=name)
    finally:
        resource_tracker.register = register


def _infer(predictor: Predictor, image: np.ndarray) -> tuple[str, object, float]:
    """("ok", prediction, seconds) or ("error", one sentence, seconds)."""
    start = time.perf_counter()
    try:
        result = "ok", predictor(image)
    except Exception as exc:  # noqa: BLE001 - one frame's failure goes back to the parent as a sentence
        result = "error", str(exc) or type(exc).__name__
    return (*result, time.perf_counter() - start)


__all__ = ["IN_FLIGHT", "InferenceProcess", "count_workers", "main", "worker_process", "worker_processes"]
