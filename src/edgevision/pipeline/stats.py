"""Counters and timings of a run: live progress and the end-of-run summary.

Every stage reports how long it spent on each frame; the last stage reports each frame's
end-to-end latency, from capture to its result being written.

>>> stats = RunStats()
>>> stats.add_stage("inference", 0.031)
>>> stats.progress().stage_ms["inference"]
31.0
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field

import numpy as np


def percentile_ms(seconds: list[float], q: float) -> float | None:
    """The ``q``-th percentile of ``seconds`` in milliseconds (None when empty).

    >>> percentile_ms([0.01, 0.02, 0.03], 50)
    20.0
    """
    return round(float(np.percentile(seconds, q)) * 1000, 2) if seconds else None


@dataclass(frozen=True)
class Progress:
    """A live view of a run: frames done, recent fps and per-stage milliseconds."""

    frames: int
    elapsed: float
    fps: float
    stage_ms: dict[str, float]
    latency_ms: float | None
    dropped: int
    corrupt: int
    reconnects: int
    events: int


@dataclass
class RunSummary:
    """What a run did, printed at the end and written by ``--stats``."""

    source: str
    frames: int
    seconds: float
    fps: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_max_ms: float | None
    stage_ms: dict[str, float]
    dropped: int = 0
    corrupt: int = 0
    reconnects: int = 0
    events: int = 0
    event_counts: dict[str, int] = field(default_factory=dict)  # "enter lawn" -> n
    stride: int = 1
    outputs: dict[str, str] = field(default_factory=dict)
    stopped_by: str | None = None  # "SIGINT", "SIGTERM" or "SIGHUP" when a signal ended the run early
    workers: int = 1  # frames inferred at once; ``stage_ms["inference"]`` is one frame's time in one of them
    isolated: bool = False  # inference ran in worker processes (``run --isolate``)

    def to_dict(self) -> dict:
        return asdict(self)


class RunStats:
    """Thread-safe counters of one run."""

    def __init__(self, *, window: int = 50) -> None:
        self._lock = threading.Lock()
        self._recent: dict[str, deque[float]] = {}
        self._totals: Counter[str] = Counter()
        self._counts: Counter[str] = Counter()
        self._done_at: deque[float] = deque(maxlen=window)
        self.latencies: list[float] = []
        self.event_counts: Counter[str] = Counter()
        self.dropped = self.corrupt = self.reconnects = 0
        self.started = time.perf_counter()
        self.first_capture: float | None = None
        self.last_done: float | None = None
        self._window = window

    def add_stage(self, stage: str, seconds: float) -> None:
        with self._lock:
            self._recent.setdefault(stage, deque(maxlen=self._window)).append(seconds)
            self._totals[stage] += seconds
            self._counts[stage] += 1

    def add_event(self, kind: str, zone: str) -> None:
        with self._lock:
            self.event_counts[f"{kind} {zone}"] += 1

    def frame_done(self, captured: float) -> None:
        """Record a frame whose result is out; ``captured`` is its ``perf_counter`` capture time."""
        now = time.perf_counter()
        with self._lock:
            self.first_capture = captured if self.first_capture is None else min(self.first_capture, captured)
            self.last_done = now
            self.latencies.append(now - captured)
            self._done_at.append(now)

    @property
    def frames(self) -> int:
        return len(self.latencies)

    def _recent_fps(self) -> float:
        if len(self._done_at) < 2:
            return 0.0
        span = self._done_at[-1] - self._done_at[0]
        return (len(self._done_at) - 1) / span if span > 0 else 0.0

    def progress(self) -> Progress:
        with self._lock:
            stage_ms = {k: round(1000 * sum(v) / len(v), 1) for k, v in self._recent.items() if v}
            latency = round(1000 * self.latencies[-1], 1) if self.latencies else None
            return Progress(
                self.frames,
                time.perf_counter() - self.started,
                round(self._recent_fps(), 2),
                stage_ms,
                latency,
                self.dropped,
                self.corrupt,
                self.reconnects,
                sum(self.event_counts.values()),
            )

    def summary(self, *, source: str, stride: int = 1, outputs: dict[str, str] | None = None) -> RunSummary:
        with self._lock:
            span = (self.last_done - self.first_capture) if self.frames else 0.0
            return RunSummary(
                source=source,
                frames=self.frames,
                seconds=round(span, 3),
                fps=round(self.frames / span, 2) if span > 0 else 0.0,
                latency_p50_ms=percentile_ms(self.latencies, 50),
                latency_p95_ms=percentile_ms(self.latencies, 95),
                latency_max_ms=percentile_ms(self.latencies, 100),
                stage_ms={k: round(1000 * self._totals[k] / self._counts[k], 2) for k in self._totals},
                dropped=self.dropped,
                corrupt=self.corrupt,
                reconnects=self.reconnects,
                events=sum(self.event_counts.values()),
                event_counts=dict(self.event_counts),
                stride=stride,
                outputs=outputs or {},
            )
