"""Peak resident memory of the current process.

Linux reports the high-water mark of resident memory as ``VmHWM`` in
``/proc/self/status``; elsewhere ``resource.getrusage(...).ru_maxrss`` gives the same
figure (kilobytes on Linux, bytes on macOS).
"""

from __future__ import annotations

import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")


def _vmhwm_kb(status: Path = _STATUS) -> int | None:
    """``VmHWM`` in kB from a ``/proc/<pid>/status`` file, or None when absent."""
    try:
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _maxrss_kb() -> int:
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss // 1024 if sys.platform == "darwin" else rss


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (10^6 bytes).

    >>> peak_rss_mb() > 0
    True
    """
    kb = _vmhwm_kb() or _maxrss_kb()
    return kb * 1024 / 1e6
