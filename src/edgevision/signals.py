"""Stop signals as one exception: SIGTERM and SIGHUP end a command the way Ctrl-C does.

systemd, docker and ``timeout`` stop a process with SIGTERM; a closed terminal sends
SIGHUP. Inside :func:`stop_on_signals` each of them raises
:class:`~edgevision.errors.Interrupted` (a ``KeyboardInterrupt``) in the main thread, so the
code that finishes a video, flushes JSON lines and writes stats on Ctrl-C runs for them too.
Nothing is installed at import; handlers set by someone else (or ignored signals, as under
``nohup``) are left alone, and the previous handlers come back when the block ends.

>>> with stop_on_signals():       # doctest: +SKIP
...     run_pipeline(predictor, "vtest.avi", outputs=RunOutputs(video="out.mp4"))
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from edgevision.errors import Interrupted

STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


@dataclass
class Stops:
    """The stop signals that arrived inside a ``stop_on_signals`` block, last one last."""

    received: list[Interrupted]

    @property
    def last(self) -> Interrupted | None:
        return self.received[-1] if self.received else None


def _is_default(handler) -> bool:
    return handler in (signal.SIG_DFL, signal.default_int_handler)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[Stops]:
    """Within the block, SIGINT, SIGTERM and SIGHUP raise ``Interrupted`` (main thread only)."""
    stops = Stops([])
    if threading.current_thread() is not threading.main_thread():
        yield stops
        return

    def interrupt(signum: int, frame) -> None:
        stops.received.append(Interrupted(signum))
        raise stops.received[-1]

    previous = {}
    for name in STOP_SIGNALS:
        signum = getattr(signal, name, None)  # no SIGHUP on Windows
        if signum is not None and _is_default(signal.getsignal(signum)):
            previous[signum] = signal.signal(signum, interrupt)
    try:
        yield stops
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
