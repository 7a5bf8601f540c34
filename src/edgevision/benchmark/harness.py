"""Timing in worker processes: one process per variant and thread count, rounds interleaved.

>>> tasks = [WorkerTask("ort-fp32", Path("m.onnx"), "onnxruntime", 2, "nanodet-m")]  # doctest: +SKIP
>>> timings = time_variants(tasks, image, TimingOptions())                            # doctest: +SKIP
>>> summarize(timings[tasks[0].id].ms)["p50"]                                          # doctest: +SKIP
22.1

Every worker is started and loaded first (load time and first inference are measured
then), warmed up, and then told in turn, round after round, to run for a while; the order
rotates every round, so drift of the machine (other jobs, clock changes) hits every
variant alike. Peak memory is read in each worker after its first round.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgevision.errors import EdgevisionError

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class WorkerTask:
    """One variant file to time at one thread count."""

    key: str  # variant key, e.g. "ort-int8"
    path: Path
    runtime: str
    threads: int
    source_model: str | None = None  # zoo model whose processor feeds and decodes it
    card: dict | None = None  # else the model card that does
    precision: str | None = None  # the backend's ``precision=`` option; None: the runtime's own rule

    @property
    def id(self) -> str:
        return f"{self.key}@{self.threads}"


@dataclass(frozen=True)
class TimingOptions:
    """How long to time: rounds, seconds per round, warm-up (excluded from the figures)."""

    rounds: int = 5
    round_seconds: float = 1.0
    min_iterations: int = 3
    warmup_iterations: int = 3
    warmup_seconds: float = 0.5
    pipeline_seconds: float = 0.3
    overhead_blocks: int = 4


@dataclass
class Timing:
    """What one worker measured."""

    task: WorkerTask
    load_s: float | None = None
    first_ms: float | None = None
    ms: list[float] = field(default_factory=list)
    pipeline_ms: list[float] = field(default_factory=list)
    peak_rss_mb: float | None = None
    error: str | None = None
    pid: int | None = None  # the worker process that loaded and timed the variant
    inference_precision: str | None = None  # what the loaded runtime reports its float layers run in
    settings: dict = field(default_factory=dict)  # how the runtime was set up (threads, hints, streams)


class WorkerError(EdgevisionError):
    """A worker process reported an error or died."""


class Worker:
    """A persistent ``edgevision.benchmark.worker`` process running one variant."""

    def __init__(self, task: WorkerTask, log: Path) -> None:
        self.task = task
        self.log = log
        self._log_file = open(log, "w")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edgevision.benchmark.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            text=True,
            bufsize=1,
        )

    def call(self, cmd: str, **args) -> dict:
        """Send one command and wait for its answer; a clear error when the worker fails."""
        try:
            self.process.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            raise WorkerError(f"{self.task.id}: worker died during '{cmd}'; {self._last_log_line()}")
        reply = json.loads(line)
        if "error" in reply:
            raise WorkerError(f"{self.task.id}: {reply['error']}")
        return reply

    def _last_log_line(self) -> str:
        self._log_file.flush()
        lines = [line for line in self.log.read_text(errors="replace").splitlines() if line.strip()]
        return lines[-1] if lines else "no message"

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write('{"cmd": "quit"}\n')
                self.process.stdin.flush()
                self.process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
        self._log_file.close()


def summarize(ms: list[float]) -> dict:
    """p50/p90/p99/mean milliseconds, throughput (inferences per second) and sample count.

    >>> summarize([1.0, 2.0, 3.0, 4.0])["p50"]
    2.5
    """
    if not ms:
        return {}
    values = np.asarray(ms, dtype=np.float64)
    p50, p90, p99 = (float(v) for v in np.percentile(values, [50, 90, 99]))
    return {
        "p50": p50,
        "p90": p90,
        "p99": p99,
        "mean": float(values.mean()),
        "throughput": float(len(values) / (values.sum() / 1e3)),
        "samples": int(len(values)),
    }


# ----------------------------------------------------------------------------- the rounds


class WorkerPool:
    """Started and loaded workers, one per task, closed together."""

    def __init__(self, tasks: list[WorkerTask], image: np.ndarray, folder: Path) -> None:
        self.folder = folder
        self.image_path = folder / "image.npy"
        np.save(self.image_path, image)
        self.workers = {t.id: Worker(t, folder / f"{t.id}.log") for t in tasks}
        self.timings = {t.id: Timing(t) for t in tasks}

    def load_all(self, options: TimingOptions, say: Progress) -> None:
        for task_id, worker in self.workers.items():
            say(f"loading {task_id}")
            self._guard(task_id, lambda w=worker: self._load(w, options))

    def _load(self, worker: Worker, options: TimingOptions) -> None:
        t = worker.task
        reply = worker.call(
            "load",
            path=str(t.path),
            runtime=t.runtime,
            threads=t.threads,
            source_model=t.source_model,
            card=t.card,
            precision=t.precision,
            image=str(self.image_path),
        )
        timing = self.timings[t.id]
        timing.load_s, timing.first_ms, timing.pid = reply["load_s"], reply["first_ms"], reply["pid"]
        timing.inference_precision = reply.get("inference_precision")
        timing.settings = reply.get("settings", {})
        worker.call("run", n=options.warmup_iterations, seconds=options.warmup_seconds)

    def _guard(self, task_id: str, step: Callable[[], None]) -> None:
        """Run ``step``; a failing worker is recorded and closed, the others go on."""
        if self.timings[task_id].error:
            return
        try:
            step()
        except WorkerError as exc:
            logger.warning("%s", exc)
            self.timings[task_id].error = str(exc)
            self.workers[task_id].close()

    def live(self) -> list[str]:
        return [task_id for task_id, timing in self.timings.items() if not timing.error]

    def round(self, index: int, options: TimingOptions, say: Progress) -> None:
        """One round: each live worker in turn (order rotated by ``index``) runs, then runs the pipeline."""
        order = self.live()
        order = order[index % len(order) :] + order[: index % len(order)] if order else order
        for task_id in order:
            say(f"round {index + 1}/{options.rounds}: {task_id}")
            self._guard(task_id, lambda t=task_id: self._round_step(t, index, options))

    def _round_step(self, task_id: str, index: int, options: TimingOptions) -> None:
        worker, timing = self.workers[task_id], self.timings[task_id]
        timing.ms += worker.call("run", n=options.min_iterations, seconds=options.round_seconds)["ms"]
        if index == 0:
            timing.peak_rss_mb = worker.call("memory")["peak_rss_mb"]
        timing.pipeline_ms += worker.call("pipeline", n=1, seconds=options.pipeline_seconds)["ms"]

    def close(self) -> None:
        for worker in self.workers.values():
            worker.close()


def time_variants(
    tasks: list[WorkerTask],
    image: np.ndarray,
    options: TimingOptions,
    *,
    progress: Progress | None = None,
    extra: Callable[[WorkerPool], None] | None = None,
) -> dict[str, Timing]:
    """Load every task in its own worker, then time them in interleaved rounds.

    ``extra(pool)`` runs while the workers are still alive (for accuracy or overhead runs).
    """
    say = progress or logger.info
    with tempfile.TemporaryDirectory(prefix="edgevision-bench-") as tmp:
        pool = WorkerPool(tasks, image, Path(tmp))
        try:
            pool.load_all(options, say)
            for index in range(options.rounds):
                pool.round(index, options, say)
            if extra is not None:
                extra(pool)
        finally:
            pool.close()
    return pool.timings


def measure_overhead(worker: Worker, options: TimingOptions) -> dict:
    """edgevision's ``backend.run`` vs a bare ``session.run`` loop on the same ONNX Runtime session.

    Blocks of each alternate so drift hits both; the figure is the ratio of the medians.
    """
    ours: list[float] = []
    bare: list[float] = []
    for _ in range(options.overhead_blocks):
        ours += worker.call("run", n=options.min_iterations, seconds=options.round_seconds / 2)["ms"]
        bare += worker.call("bare", n=options.min_iterations, seconds=options.round_seconds / 2)["ms"]
    p50_ours, p50_bare = float(np.median(ours)), float(np.median(bare))
    return {
        "variant": worker.task.id,
        "edgevision_p50_ms": p50_ours,
        "bare_p50_ms": p50_bare,
        "overhead_us": 1e3 * (p50_ours - p50_bare),
        "overhead_pct": 100.0 * (p50_ours / p50_bare - 1.0),
        "samples": [len(ours), len(bare)],
    }
