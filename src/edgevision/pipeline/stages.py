"""Stages on threads joined by bounded queues, so decoding and drawing hide behind inference.

A stage takes items from its inbox, hands each to a function, and puts what the function
returns (unless None) in its outbox. :data:`END` flows through the queues after the last
item. The first error in any stage stops every stage and is raised again by
:meth:`StageGroup.join`.

>>> group = StageGroup()
>>> numbers, doubled = Pipe(2), Pipe(2)
>>> group.produce("count", iter(range(3)), numbers)
>>> group.stage("double", lambda x: 2 * x, numbers, doubled)
>>> out = []
>>> group.stage("collect", out.append, doubled, None)
>>> group.join(); out
[0, 2, 4]
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

logger = logging.getLogger(__name__)

END = object()
"""Put after the last item; every stage passes it on and stops."""


class Pipe:
    """A bounded queue between two stages.

    With ``drop_oldest`` a full pipe discards its oldest item to make room (live sources
    keep only the freshest frames) and counts it in ``dropped``; otherwise ``put`` waits.
    """

    def __init__(self, size: int, *, drop_oldest: bool = False) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=size)
        self.drop_oldest = drop_oldest
        self.dropped = 0
        self._lock = threading.Lock()

    def put(self, item: Any, stop: threading.Event) -> bool:
        """Put ``item``; False when ``stop`` was set while waiting for room."""
        if self.drop_oldest and item is not END:
            return self._put_dropping(item)
        while not stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _put_dropping(self, item: Any) -> bool:
        with self._lock:
            while True:
                try:
                    self._queue.put_nowait(item)
                    return True
                except queue.Full:
                    try:
                        self._queue.get_nowait()
                        self.dropped += 1
                    except queue.Empty:
                        pass

    def get(self, stop: threading.Event) -> Any:
        """The next item, or END when the pipe ended or ``stop`` was set."""
        while not stop.is_set():
            try:
                return self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
        return END

    def close(self, stop: threading.Event) -> None:
        """Signal the end; a dropping pipe always makes room for it."""
        if self.drop_oldest:
            with self._lock:
                while self._queue.full():
                    self._queue.get_nowait()
                    self.dropped += 1
        self.put(END, stop)


class StageGroup:
    """The threads of one pipeline; ``abort`` stops them all at once."""

    def __init__(self) -> None:
        self.abort = threading.Event()
        self._threads: list[threading.Thread] = []
        self._errors: list[BaseException] = []

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        def guarded() -> None:
            try:
                target()
            except BaseException as exc:  # noqa: BLE001 - re-raised by join() in the caller's thread
                if not self._errors:
                    self._errors.append(exc)
                self.abort.set()

        thread = threading.Thread(target=guarded, name=f"edgevision-{name}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def produce(self, name: str, items: Iterator[Any], outbox: Pipe) -> None:
        """Put every item of ``items`` into ``outbox``, then END."""

        def loop() -> None:
            try:
                for item in items:
                    if not outbox.put(item, self.abort):
                        return
            finally:
                outbox.close(self.abort)

        self._spawn(name, loop)

    def stage(self, name: str, work: Callable[[Any], Any], inbox: Pipe, outbox: Pipe | None) -> None:
        """Apply ``work`` to each item of ``inbox``; results that are not None go to ``outbox``."""

        def loop() -> None:
            try:
                while (item := inbox.get(self.abort)) is not END:
                    result = work(item)
                    if outbox is not None and result is not None and not outbox.put(result, self.abort):
                        return
            finally:
                if outbox is not None:
                    outbox.close(self.abort)

        self._spawn(name, loop)

    def parallel_stage(self, name: str, works: Sequence[Callable[[Any], Any]], inbox: Pipe, outbox: Pipe) -> None:
        """Like :meth:`stage` with one thread per function of ``works``, each taking the next
        item of ``inbox``; results leave in the order their items came in.

        Items run on several workers at once (each worker owns its function, e.g. its own copy
        of a model) and are held back until every earlier item has left, so the next stage
        sees them in order. Python's ``queue`` has no ordered fan-in, so this is written here.

        >>> import time
        >>> group = StageGroup()
        >>> numbers, squared = Pipe(2), Pipe(2)
        >>> group.produce("count", iter(range(6)), numbers)
        >>> slow_first = [lambda x: (time.sleep(0.01 * (x % 2)), x * x)[1]] * 3
        >>> group.parallel_stage("square", slow_first, numbers, squared)
        >>> out = []
        >>> group.stage("collect", out.append, squared, None)
        >>> group.join(); out
        [0, 1, 4, 9, 16, 25]
        """
        if len(works) == 1:
            return self.stage(name, works[0], inbox, outbox)
        take = threading.Lock()  # one worker at a time takes an item and its number
        turn = threading.Condition()  # the number of the next item to leave
        state = {"taken": 0, "left": 0, "ended": False, "running": len(works)}

        def emit(number: int, result: Any) -> bool:
            with turn:
                while state["left"] != number:
                    if self.abort.is_set():
                        return False
                    turn.wait(0.1)
                sent = result is None or outbox.put(result, self.abort)
                state["left"] += 1
                turn.notify_all()
                return sent

        def loop(work: Callable[[Any], Any]) -> None:
            try:
                while True:
                    with take:
                        item = END if state["ended"] else inbox.get(self.abort)
                        if item is END:
                            state["ended"] = True
                            return
                        number = state["taken"]
                        state["taken"] += 1
                    if not emit(number, work(item)):
                        return
            finally:
                with turn:
                    state["running"] -= 1
                    last = state["running"] == 0
                if last:
                    outbox.close(self.abort)

        for index, work in enumerate(works):
            self._spawn(f"{name}-{index + 1}", lambda work=work: loop(work))

    def stop(self, *, timeout: float = 10.0) -> None:
        """Abort every stage and wait (at most ``timeout`` seconds each) for their threads to end."""
        self.abort.set()
        for thread in self._threads:
            thread.join(timeout=timeout)

    def join(self, *, poll: Callable[[], None] | None = None, every: float = 0.5) -> None:
        """Wait for every stage (calling ``poll`` every ``every`` seconds); raise the first error."""
        for thread in self._threads:
            while thread.is_alive():
                thread.join(timeout=every)
                if poll is not None:
                    poll()
        if self._errors:
            raise self._errors[0]
