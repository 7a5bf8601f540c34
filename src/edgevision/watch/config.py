"""The ``edgevision watch`` configuration: a YAML file read into typed, checked settings.

Every problem is one sentence that names its key path and what is expected, and all of
them are reported at once, so a config is fixed in one pass.

>>> config = watch_config_from_dict({"cameras": {"gate": {"source": "0"}}}, base=Path("."))
>>> config.model, config.web.port, config.cameras["gate"].source_kind
('nanodet-m', 8971, 'camera')
"""

from __future__ import annotations

import ipaddress
import math
import re
import socket
import ssl
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from edgevision.errors import EdgevisionError, cause
from edgevision.media import is_video
from edgevision.pipeline.capture import source_kind
from edgevision.pipeline.zones import Line, Zone
from edgevision.samples import SAMPLES, sample_path
from edgevision.watch.auth import parse_password_hash

SAMPLE_PREFIX = "sample:"  # a source naming one of edgevision's sample videos, fetched when first used
# Camera, zone and line names end up in file names, URLs and MQTT topics: keep them plain.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/@:]*:)[^/@]*@")
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?$")


def _fraction(value: float) -> float:
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"coordinates are fractions of the frame between 0 and 1, got {value:g}")
    return value


def _safe_name(name: str) -> str:
    if not SAFE_NAME.fullmatch(name):
        raise ValueError(
            "a name must start with a letter or digit and hold only letters, digits, '_' or '-' (64 at most)"
        )
    return name


def _zone_points(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(points) < 3:
        raise ValueError(f"a zone needs at least 3 points, got {len(points)}")
    try:
        Zone("zone", tuple(points))  # the pipeline's own check: the points must enclose an area
    except EdgevisionError:
        raise ValueError("the zone's points lie on one line, so it has no area; give a polygon") from None
    return points


def _line_points(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(points) != 2:
        raise ValueError(f"a line needs exactly 2 points, got {len(points)}")
    if tuple(points[0]) == tuple(points[1]):
        raise ValueError("the line starts and ends at the same point; give two different points")
    return points


def _base(info: ValidationInfo) -> Path | None:
    """The config file's folder, against which relative paths resolve (None: leave them as given)."""
    return (info.context or {}).get("base")


def _resolved(path: Path, info: ValidationInfo) -> Path:
    base = _base(info)
    return path if base is None or path.is_absolute() else (base / path).resolve()


def _check_source(source: str, info: ValidationInfo) -> str:
    """A sample name, camera or stream as given; a video file that exists, resolved against the config's folder."""
    if source.startswith(SAMPLE_PREFIX):
        name = source.removeprefix(SAMPLE_PREFIX)
        videos = [n for n in SAMPLES if is_video(n)]
        if name not in videos:
            raise ValueError(f"unknown sample video '{name}'; the sample videos are {', '.join(videos)}")
        return source
    kind = source_kind(source)
    if kind in ("camera", "stream"):
        return source
    path = _resolved(Path(source).expanduser(), info)
    if kind != "video" or path.is_dir():
        raise ValueError(
            "expected a video file, a camera (/dev/videoN or its number) or a stream URL (rtsp://...), "
            f"got '{shown_source(source)}'"
        )
    if not path.is_file():
        raise ValueError(f"the video file {path} does not exist")
    return str(path)


def shown_source(source: str) -> str:
    """``source`` with any password in its URL hidden, for summaries and messages.

    >>> shown_source("rtsp://admin:secret@10.0.0.5/stream1")
    'rtsp://admin:***@10.0.0.5/stream1'
    """
    return _PASSWORD.sub(r"\1***@", source)


def _some_cameras(cameras: dict) -> dict:
    if not cameras:
        raise ValueError("give at least one camera (a name with its source)")
    return cameras


def _text(value: Any) -> Any:
    """YAML reads ``source: 0`` (camera 0) as a number; every text setting takes it as text."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


Fraction = Annotated[float, AfterValidator(_fraction)]
Point = tuple[Fraction, Fraction]
ZonePoints = Annotated[list[Point], AfterValidator(_zone_points)]
LinePoints = Annotated[list[Point], AfterValidator(_line_points)]
Name = Annotated[str, AfterValidator(_safe_name)]
Text = Annotated[str, BeforeValidator(_text), Field(min_length=1)]


class _Section(BaseModel):
    """A config section: unknown keys are refused with the list of known ones (a typo is never ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = [str(k) for k in data if k not in cls.model_fields]
            if unknown:
                known = ", ".join(cls.model_fields)
                raise ValueError(f"unknown key '{unknown[0]}'; the known keys are {known}")
        return data


class LineConfig(_Section):
    """A counting line: two points and the crossing direction that counts."""

    points: LinePoints
    direction: Literal["both", "in", "out"] = "both"


class RulesConfig(_Section):
    """Which classes fire events, and after how long a stay in a zone fires ``dwell``."""

    classes: list[Text] = Field(default=["person"], min_length=1)
    dwell_s: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None


class MotionConfig(_Section):
    """Motion gating: the model runs only on frames where something moved."""

    enabled: bool = True
    keyframe_s: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 2.0  # run the model at least this often
    threshold: Annotated[int, Field(ge=1, le=255)] = 25  # grey-level change that counts a pixel as moved
    min_area: Fraction = 0.002  # fraction of the frame that must move


class CameraConfig(_Section):
    """One camera: where its frames come from, its zones and lines, and what fires events."""

    source: Text
    model: Text | None = None  # None: the config's top-level model
    loop: bool = False
    zones: dict[Name, ZonePoints] = {}
    lines: dict[Name, LineConfig] = {}
    rules: RulesConfig = RulesConfig()
    motion: MotionConfig = MotionConfig()

    @field_validator("source")
    @classmethod
    def _source(cls, source: str, info: ValidationInfo) -> str:
        return _check_source(source, info)

    @model_validator(mode="after")
    def _consistent(self) -> CameraConfig:
        if both := sorted(set(self.zones) & set(self.lines)):
            raise ValueError(f"'{both[0]}' names both a zone and a line; give each a name of its own")
        if self.loop and self.source_kind != "video":
            raise ValueError(
                f"loop: true is for video files only, and source {shown_source(self.source)} is a {self.source_kind}"
            )
        return self

    @property
    def source_kind(self) -> str:
        """``"camera"``, ``"stream"`` or ``"video"`` (sample videos included)."""
        return "video" if self.source.startswith(SAMPLE_PREFIX) else source_kind(self.source)

    def source_path(self) -> str:
        """What capture opens: the source itself, or a sample's cached path (fetched on first use)."""
        if self.source.startswith(SAMPLE_PREFIX):
            return str(sample_path(self.source.removeprefix(SAMPLE_PREFIX)))
        return self.source

    def zone_objects(self) -> tuple[Zone, ...]:
        """The zones as the pipeline's :class:`~edgevision.pipeline.zones.Zone` (fractions of the frame)."""
        classes = tuple(self.rules.classes)
        return tuple(
            Zone(name, tuple(map(tuple, points)), dwell_seconds=self.rules.dwell_s, classes=classes)
            for name, points in self.zones.items()
        )

    def line_objects(self) -> tuple[Line, ...]:
        """The lines as the pipeline's :class:`~edgevision.pipeline.zones.Line`."""
        classes = tuple(self.rules.classes)
        return tuple(
            Line(name, tuple(line.points[0]), tuple(line.points[1]), direction=line.direction, classes=classes)
            for name, line in self.lines.items()
        )


def _data_folder(path: Path, info: ValidationInfo) -> Path:
    path = _resolved(path.expanduser(), info)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file; give a folder for the events, snapshots and clips")
    return path


class StorageConfig(_Section):
    """Where events, snapshots and clips are kept, and for how long."""

    path: Path = Field(default=Path("watch-data"), validate_default=True)
    retain_days: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 7.0
    max_gb: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 5.0
    min_free_gb: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.5

    @field_validator("path")
    @classmethod
    def _folder(cls, path: Path, info: ValidationInfo) -> Path:
        return _data_folder(path, info)

    @property
    def max_bytes(self) -> int:
        return int(self.max_gb * 1e9)

    @property
    def min_free_bytes(self) -> int:
        return int(self.min_free_gb * 1e9)


def _token(token: str) -> str:
    if len(token) < MIN_TOKEN:  # the token itself is never repeated in a message
        raise ValueError(
            f"a token needs at least {MIN_TOKEN} characters, got {len(token)}; make one with: {TOKEN_HINT}"
        )
    return token


def _password_hash(stored: str) -> str:
    parse_password_hash(stored)
    return stored


MIN_TOKEN = 16
TOKEN_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


class AuthConfig(_Section):
    """Who may use the web page: a token (API clients and the login page), a hashed password, or both."""

    token: Annotated[str, BeforeValidator(_text), AfterValidator(_token)] | None = None
    password_hash: Annotated[str, AfterValidator(_password_hash)] | None = None
    session_hours: Annotated[float, Field(gt=0, le=24 * 365, allow_inf_nan=False)] = 24.0

    @model_validator(mode="after")
    def _some_secret(self) -> AuthConfig:
        if self.token is None and self.password_hash is None:
            raise ValueError("give a token, a password_hash (edgevision watch --hash-password) or both")
        return self


class WebConfig(_Section):
    """The web page's address, and who may use it (required beyond this machine)."""

    bind: Text = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8971
    auth: AuthConfig | None = None

    @model_validator(mode="after")
    def _address(self) -> WebConfig:
        try:
            ipaddress.ip_address(self.bind)
        except ValueError:
            if not _HOST.fullmatch(self.bind):
                raise ValueError(f"bind must be an IP address or a host name, got '{self.bind}'") from None
        if self.auth is None and not self.loopback:
            raise ValueError(
                f"binding {self.bind} opens the web page to other machines, so it needs web.auth "
                f"with a token or a password_hash (edgevision watch --hash-password); or bind 127.0.0.1"
            )
        return self

    @property
    def loopback(self) -> bool:
        """Whether only this machine can reach the page (a loopback address or ``localhost``)."""
        if self.bind.lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.bind).is_loopback
        except ValueError:
            return False  # a host name may resolve to anything


def _check_host(host: str) -> str:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOST.fullmatch(host):
            raise ValueError(f"expected an IP address or a host name, got '{host}'") from None
    return host


def _topic(topic: str) -> str:
    """A topic prefix: levels joined by '/', none empty, no wildcards (they are for subscribing)."""
    if any(c in topic for c in "+#\x00") or any(not level for level in topic.split("/")):
        raise ValueError(
            f"expected topic levels such as 'edgevision' or 'home/edgevision' (no '+', '#' or empty level), got '{topic}'"
        )
    return topic


def _existing_file(path: Path, info: ValidationInfo) -> Path:
    path = _resolved(path.expanduser(), info)
    if not path.is_file():
        raise ValueError(f"the file {path} does not exist")
    return path


def _tls(value: Any) -> Any:
    """``tls: true`` is TLS with the system's certificate authorities; ``false`` (or none) is no TLS."""
    if value is True:
        return {}
    if value is False or value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(
            f"expected true, false or a mapping of ca_certs, certfile, keyfile, insecure, got {_shown(value)}"
        )
    return value


def host_name() -> str:
    """This machine's name cut to a watcher id: its first label, letters, digits, '_' and '-' only."""
    name = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname().split(".")[0]).strip("-_")[:64]
    return name or "edgevision"


Host = Annotated[str, BeforeValidator(_text), AfterValidator(_check_host)]
Topic = Annotated[str, AfterValidator(_topic), Field(min_length=1, max_length=128)]
ExistingFile = Annotated[Path, AfterValidator(_existing_file)]


class TlsConfig(_Section):
    """TLS to the broker: the authority that signed its certificate, and this client's own certificate."""

    ca_certs: ExistingFile | None = None  # None: the system's certificate authorities
    certfile: ExistingFile | None = None
    keyfile: ExistingFile | None = None
    insecure: bool = False  # do not check that the broker's certificate names its host

    @field_validator("ca_certs")
    @classmethod
    def _authorities(cls, path: Path | None) -> Path | None:
        if path is not None:
            try:
                ssl.create_default_context().load_verify_locations(cafile=path)
            except ssl.SSLError as exc:
                raise ValueError(f"{path} holds no certificate in PEM form ({cause(exc)})") from None
        return path

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if self.keyfile and not self.certfile:
            raise ValueError("keyfile is the key of certfile; give certfile too")
        if self.certfile:
            try:  # an empty passphrase: an encrypted key is refused here, never asked for on a terminal
                ssl.create_default_context().load_cert_chain(self.certfile, self.keyfile, password=lambda: b"")
            except ssl.SSLError as exc:
                raise ValueError(
                    f"certfile and keyfile are not a certificate and its unencrypted key in PEM form ({cause(exc)})"
                ) from None
        return self


class DiscoveryConfig(_Section):
    """Home Assistant MQTT discovery."""

    enabled: bool = True
    prefix: Topic = "homeassistant"


class MqttConfig(_Section):
    """The MQTT broker that events and states are published to."""

    host: Host
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    username: Text | None = None
    password: Annotated[str, BeforeValidator(_text)] | None = None
    tls: Annotated[TlsConfig | None, BeforeValidator(_tls)] = None
    topic_prefix: Topic = "edgevision"
    client_id: Name | None = None  # None: the host name; each watcher on a broker needs its own
    keepalive: Annotated[int, Field(ge=5, le=3600)] = 60
    discovery: DiscoveryConfig = DiscoveryConfig()

    @model_validator(mode="after")
    def _user(self) -> MqttConfig:
        if self.password is not None and self.username is None:
            raise ValueError("a password needs its username; give username too")
        return self

    @property
    def watcher(self) -> str:
        """The watcher's id in topics and payloads: ``client_id``, else the host name."""
        return self.client_id or host_name()

    def summary(self) -> str:
        user = f"{self.username}:***@" if self.password is not None else f"{self.username}@" if self.username else ""
        scheme = "mqtts" if self.tls else "mqtt"
        discovery = f", Home Assistant discovery under {self.discovery.prefix}/" if self.discovery.enabled else ""
        return (
            f"mqtt: {scheme}://{user}{self.host}:{self.port}, topics {self.topic_prefix}/{self.watcher}/...{discovery}"
        )


class WatchConfig(_Section):
    """The whole ``edgevision watch`` configuration."""

    model: Text = "nanodet-m"
    isolate: bool = False  # infer in a process of its own, started again if it dies (``run --isolate``)
    # Copies of the model (worker processes with ``isolate``) inferring different cameras' frames
    # at once, the cores shared among them (``run --workers``); one camera's frames go one at a time.
    workers: Annotated[int, Field(ge=1, le=16)] = 1
    storage: StorageConfig = Field(default={}, validate_default=True)  # validated: its path resolves too
    cameras: Annotated[dict[Name, CameraConfig], AfterValidator(_some_cameras)]
    web: WebConfig = WebConfig()
    mqtt: MqttConfig | None = None  # None: no MQTT

    def model_of(self, camera: str) -> str:
        """The model camera ``camera`` runs: its own, else the config's."""
        return self.cameras[camera].model or self.model

    def _how(self) -> str:
        """How the model infers, as the summary says it."""
        if self.isolate:
            processes = "a process of its own" if self.workers == 1 else f"{self.workers} processes of their own"
            return f" (inferring in {processes})"
        return f" ({self.workers} copies inferring at once)" if self.workers > 1 else ""

    def summary_lines(self) -> list[str]:
        """A few lines that say what the service would watch and where it keeps what it sees."""
        lines = [f"{len(self.cameras)} camera{'s' if len(self.cameras) != 1 else ''}, model {self.model}{self._how()}"]
        for name, camera in self.cameras.items():
            model = f", model {camera.model}" if camera.model else ""
            loop = ", looping" if camera.loop else ""
            lines.append(f"  {name}: {camera.source_kind} {shown_source(camera.source)}{loop}{model}")
            lines.append(f"    zones: {', '.join(camera.zones) or 'none'}; lines: {', '.join(camera.lines) or 'none'}")
        storage = self.storage
        free = f", the oldest deleted below {storage.min_free_gb:g} GB free on its disk" if storage.min_free_gb else ""
        lines.append(
            f"storage: {storage.path} (events kept {storage.retain_days:g} days, at most {storage.max_gb:g} GB{free})"
        )
        auth = self.web.auth
        kinds = [k for k in ("token", "password_hash") if auth is not None and getattr(auth, k)]
        login = f" (login: {' or '.join(kinds).replace('_hash', '')})" if kinds else " (no login: read-only page)"
        lines.append(f"web: http://{self.web.bind}:{self.web.port}/{login}")
        if self.mqtt is not None:
            lines.append(self.mqtt.summary())
        return lines


class FleetStorage(_Section):
    """Where the dashboard keeps the events it received, and how many."""

    path: Annotated[Path, AfterValidator(_data_folder)] = Field(default=Path("fleet-data"), validate_default=True)
    retain_days: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 30.0
    max_events: Annotated[int, Field(ge=100)] = 1_000_000


class DashboardConfig(_Section):
    """The whole ``edgevision dashboard`` configuration: the broker, the web page, the event store."""

    mqtt: MqttConfig
    web: WebConfig
    storage: FleetStorage = Field(default={}, validate_default=True)


DASHBOARD_PORT = 8972
OPTION_OF = {  # a dashboard setting's command-line option, for its messages
    "mqtt.host": "--mqtt",
    "mqtt.port": "--mqtt",
    "mqtt.username": "--username",
    "mqtt.password": "--password-file",
    "mqtt.tls.ca_certs": "--tls-ca",
    "mqtt.topic_prefix": "--prefix",
    "mqtt.client_id": "--client-id",
    "web.bind": "--bind",
    "web.port": "--port",
    "web.auth.token": "--token",
    "web.auth.password_hash": "--password-hash",
    "storage.path": "--data",
    "storage.retain_days": "--retain-days",
}


def split_address(address: str) -> tuple[str, int | None]:
    """``HOST``, ``HOST:PORT`` or ``[IPv6]:PORT`` as (host, port or None); ValueError when it is none of them.

    >>> split_address("broker.lan:8883"), split_address("[::1]:1883"), split_address("10.0.0.2")
    (('broker.lan', 8883), ('::1', 1883), ('10.0.0.2', None))
    """
    text = address.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") if rest.startswith(":") else None if not rest else "?"
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, None
    if not host or (port is not None and not port.isdigit()):
        raise ValueError(f"expected HOST or HOST:PORT, such as broker.lan or 192.168.1.5:1883, got '{address}'")
    return host, None if port is None else int(port)


def dashboard_config(broker: str, *, mqtt: dict, web: dict, storage: dict) -> DashboardConfig:
    """The :class:`DashboardConfig` of ``edgevision dashboard``'s options; every problem in one error.

    ``broker`` is ``HOST[:PORT]``; ``mqtt``, ``web`` and ``storage`` hold the other settings
    as the sections of a config would. A page bound beyond this machine needs a login.
    """
    where = "the dashboard options"
    try:
        host, port = split_address(broker)
    except ValueError as exc:
        raise WatchConfigError(where, [f"--mqtt: {exc}"]) from None
    web = {"port": DASHBOARD_PORT, **web}
    if not WebConfig.model_construct(bind=web.get("bind", "127.0.0.1")).loopback and not web.get("auth"):
        raise EdgevisionError(
            f"--bind {web['bind']} opens the dashboard to other machines, so it needs a login: --token "
            "(or EDGEVISION_DASHBOARD_TOKEN) or --password-hash (made by edgevision watch --hash-password); "
            "or bind 127.0.0.1."
        )
    values = {
        "mqtt": {
            "host": host,
            **({"port": port} if port else {}),
            "client_id": f"dashboard-{host_name()}"[:64],
            **mqtt,
        },
        "web": web,
        "storage": storage,
    }
    try:
        return DashboardConfig.model_validate(values, context={"base": Path.cwd()})
    except ValidationError as exc:
        problems = [
            problem({**e, "loc": (OPTION_OF.get(key_path(e["loc"]), key_path(e["loc"])),)}) for e in exc.errors()
        ]
        raise WatchConfigError(where, problems) from None


def model_path_or_name(model: str, base: Path) -> str:
    """A model file or bundle given relative to the config's folder, made absolute; a zoo name as it is."""
    candidate = (base / Path(model).expanduser()).resolve()
    return str(candidate) if candidate.exists() else model


def watch_config_from_dict(values: Any, *, base: Path, where: str = "the watch config") -> WatchConfig:
    """A :class:`WatchConfig` from parsed YAML; every problem in one :class:`WatchConfigError`."""
    if not isinstance(values, dict):
        shape = "is empty" if values is None else "must be a mapping of keys"
        raise WatchConfigError(where, [f"the config {shape}; give at least cameras: {{NAME: {{source: ...}}}}"])
    try:
        config = WatchConfig.model_validate(values, context={"base": base})
    except ValidationError as exc:
        raise WatchConfigError(where, [problem(e) for e in exc.errors()]) from None
    cameras = {
        name: camera.model_copy(update={"model": model_path_or_name(camera.model, base)}) if camera.model else camera
        for name, camera in config.cameras.items()
    }
    return config.model_copy(update={"model": model_path_or_name(config.model, base), "cameras": cameras})


def read_watch_config(path: str | Path) -> WatchConfig:
    """The config in YAML file ``path``; relative paths in it resolve against its folder."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise EdgevisionError(f"cannot read the watch config {path} ({reason}); check the path.") from None
    return watch_config_from_dict(_parse_yaml(text, path), base=path.resolve().parent, where=str(path))


def _parse_yaml(text: str, path: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise EdgevisionError(f"the watch config {path} is not valid YAML{at}: {reason}.") from None


class WatchConfigError(EdgevisionError):
    """A config with problems; ``problems`` holds one sentence per problem, each starting with its key path."""

    def __init__(self, where: str, problems: list[str]) -> None:
        self.problems = problems
        if len(problems) == 1:
            super().__init__(f"{where}: {problems[0]}.")
        else:
            lines = "".join(f"\n  {p}." for p in problems)
            super().__init__(f"{where} has {len(problems)} problems:{lines}")


def key_path(loc: tuple[int | str, ...]) -> str:
    """``("cameras", "garden", "zones", "lawn", 0, 1)`` -> ``cameras.garden.zones.lawn[0][1]``.

    >>> key_path(("cameras", "bad name", "[key]"))
    'cameras.bad name'
    """
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part != "[key]":  # pydantic's marker for a bad mapping key: the key itself says enough
            text += f".{part}" if text else str(part)
    return text


_EXPECTED = {
    "missing": "is required",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "string_type": "expected text",
    "dict_type": "expected a mapping of names to settings",
    "list_type": "expected a list",
    "tuple_type": "expected an [x, y] pair",
    "model_type": "expected a mapping of keys",
}


def problem(error: ErrorDetails) -> str:
    """One sentence for one pydantic error: the key path, then what is expected (and what was given)."""
    kind, where = error["type"], key_path(error["loc"])
    if kind == "value_error":
        text = str(error["ctx"]["error"])
    elif kind == "too_short":
        least, got = error["ctx"]["min_length"], error["ctx"]["actual_length"]
        text = f"needs at least {least} {'entry' if least == 1 else 'entries'}, got {got}"
    elif kind in _EXPECTED:
        text = _EXPECTED[kind] + ("" if kind == "missing" else f", got {_shown(error['input'])}")
    else:  # bounds, lengths, choices: pydantic's own words say what is expected
        text = f"{error['msg'].replace('Input should be', 'must be')}, got {_shown(error['input'])}"
    return f"{where}: {text}" if where else text


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
