"""Changes to the watch config from the web page: a camera's zones and lines, checked, saved, then reloaded.

The new zones and lines are put into the YAML file as it is on disk, the whole file is
checked with the same rules as at start, and only a config without problems is written:
atomically, the previous version kept beside it as ``NAME.bak``. Then the running service
reloads it through the same path as SIGHUP; if that reload refuses the file, the previous
version is put back, so the file always holds a config that runs. Comments in the file are
not kept (the YAML is written anew).

>>> editor = ConfigEditor(Path("watch.yaml"), reload=running.request_reload)        # doctest: +SKIP
>>> editor.save_geometry("garden", {"zones": {"lawn": [[0, 0.5], [1, 0.5], [1, 1]]}})  # doctest: +SKIP
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import yaml

from edgevision.errors import EdgevisionError
from edgevision.files import write_atomic
from edgevision.watch.config import CameraConfig, WatchConfigError, watch_config_from_dict

Reload = Callable[[], "Future[str | None]"]  # asks the service to reload; resolves to None or why it refused
RELOAD_TIMEOUT_S = 60.0
DIGITS = 4  # fractions are kept to 1/10000 of the frame


class EditRefused(EdgevisionError):
    """An edit that was not saved: ``problems`` holds one sentence per problem, each starting with its key path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def geometry_of(camera: CameraConfig) -> dict[str, Any]:
    """The zones and lines of ``camera`` as the write API takes them."""
    return {
        "zones": {name: [list(p) for p in points] for name, points in camera.zones.items()},
        "lines": {
            name: {"points": [list(p) for p in line.points], "direction": line.direction}
            for name, line in camera.lines.items()
        },
    }


class ConfigEditor:
    """Edits the config file ``path`` and has the service reload it with ``reload()``; one edit at a time."""

    def __init__(self, path: Path, *, reload: Reload) -> None:
        self.path = Path(path)
        self.backup = self.path.with_name(self.path.name + ".bak")
        self._reload = reload
        self._lock = threading.Lock()

    def save_geometry(self, camera: str, geometry: Any) -> None:
        """Give camera ``camera`` the ``{"zones": ..., "lines": ...}`` of ``geometry`` (a key left out is kept).

        Returns once the service runs the new config; :class:`EditRefused` when nothing was changed.
        """
        with self._lock:
            before = self._read()
            values = yaml.safe_load(before)
            _put_geometry(values, camera, geometry)
            try:
                watch_config_from_dict(values, base=self.path.resolve().parent)
            except WatchConfigError as exc:
                raise EditRefused(exc.problems) from None
            self._write(values, before)
            refused = self._reloaded()
            if refused is not None:
                write_atomic(self.path, before.encode())  # the file goes back to the config that runs
                raise EditRefused([f"the service refused the new config and runs on with the old one: {refused}"])

    def _read(self) -> str:
        try:
            return self.path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise EditRefused([f"cannot read the config {self.path} ({exc})"]) from None

    def _write(self, values: dict, before: str) -> None:
        stamp = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        header = (
            f"# Written by the edgevision watch web page on {stamp}; comments are not kept.\n"
            f"# The version before this one is {self.backup.name}.\n"
        )
        text = header + yaml.safe_dump(values, sort_keys=False, default_flow_style=None, allow_unicode=True, width=100)
        try:
            write_atomic(self.backup, before.encode())
            write_atomic(self.path, text.encode())
        except OSError as exc:
            raise EditRefused([f"cannot write the config {self.path} ({exc.strerror or exc})"]) from None

    def _reloaded(self) -> str | None:
        try:
            return self._reload().result(timeout=RELOAD_TIMEOUT_S)
        except FutureTimeout:
            return f"it did not reload within {RELOAD_TIMEOUT_S:g} s"


def _put_geometry(values: Any, camera: str, geometry: Any) -> None:
    """Replace the zones and lines of ``camera`` in the parsed config ``values`` (in place)."""
    cameras = values.get("cameras") if isinstance(values, dict) else None
    settings = cameras.get(camera) if isinstance(cameras, dict) else None
    if not isinstance(settings, dict):
        raise EditRefused([f"cameras.{camera}: the config file has no such camera (was it edited meanwhile?)"])
    if not isinstance(geometry, dict) or not set(geometry) <= {"zones", "lines"}:
        raise EditRefused(['the body must be {"zones": {NAME: [[x, y], ...]}, "lines": {NAME: {points, direction}}}'])
    for key in set(geometry) & {"zones", "lines"}:  # a key left out keeps what the file has
        value = _rounded(geometry[key] or {})
        if value:
            settings[key] = value
        else:
            settings.pop(key, None)


def _rounded(value: Any) -> Any:
    """Coordinates rounded to ``DIGITS`` places, everything else as it is (the config check judges it)."""
    if isinstance(value, float):
        return round(value, DIGITS)
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value
