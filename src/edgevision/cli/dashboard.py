"""``edgevision dashboard --mqtt HOST[:PORT]``: one page for the events and counts of every watcher on a broker."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from edgevision import api
from edgevision.errors import EdgevisionError

TOKEN_ENV = "EDGEVISION_DASHBOARD_TOKEN"
PASSWORD_ENV = "EDGEVISION_MQTT_PASSWORD"


def dashboard(
    mqtt: Annotated[str, typer.Option("--mqtt", help="The broker, HOST or HOST:PORT (1883 by default).")],
    username: Annotated[str | None, typer.Option(help="The user name at the broker.")] = None,
    password_file: Annotated[
        Path | None,
        typer.Option(help=f"A file whose first line is the broker password (or set {PASSWORD_ENV}).", dir_okay=False),
    ] = None,
    tls: Annotated[bool, typer.Option("--tls", help="TLS to the broker, checked against the system's CAs.")] = False,
    tls_ca: Annotated[
        Path | None, typer.Option(help="TLS to the broker, checked against this CA certificate (PEM).")
    ] = None,
    prefix: Annotated[str, typer.Option(help="The watchers' mqtt.topic_prefix.")] = "edgevision",
    client_id: Annotated[
        str | None, typer.Option(help="The dashboard's MQTT client id (dashboard-HOSTNAME); keep it stable.")
    ] = None,
    bind: Annotated[str, typer.Option(help="The page's address; beyond 127.0.0.1 it needs a login.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="The page's port.")] = 8972,
    token: Annotated[
        str | None, typer.Option(envvar=TOKEN_ENV, help=f"A login token of 16+ characters (better: set {TOKEN_ENV}).")
    ] = None,
    password_hash: Annotated[
        str | None, typer.Option(help="A login password's hash, made by edgevision watch --hash-password.")
    ] = None,
    data: Annotated[Path, typer.Option(help="The folder of the dashboard's event store.")] = Path("fleet-data"),
    retain_days: Annotated[float, typer.Option(help="How long events are kept.")] = 30.0,
) -> None:
    """Show the events, counts and snapshots of every watcher publishing to one MQTT broker on a web page."""
    auth = {k: v for k, v in {"token": token, "password_hash": password_hash}.items() if v}
    mqtt_settings = {"username": username, "topic_prefix": prefix}
    mqtt_settings |= {"password": _password(password_file)} if password_file or PASSWORD_ENV in os.environ else {}
    mqtt_settings |= {"tls": {"ca_certs": str(tls_ca)} if tls_ca else True} if tls or tls_ca else {}
    mqtt_settings |= {"client_id": client_id} if client_id else {}
    config = api.dashboard_config(
        mqtt,
        mqtt={k: v for k, v in mqtt_settings.items() if v is not None},
        web={"bind": bind, "port": port, **({"auth": auth} if auth else {})},
        storage={"path": str(data), "retain_days": retain_days},
    )
    api.dashboard(config)


def _password(path: Path | None) -> str:
    """The broker password: the first line of ``path``, else the environment's."""
    if path is None:
        return os.environ[PASSWORD_ENV]
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise EdgevisionError(f"cannot read the password file {path} ({reason}); check --password-file.") from None
    return lines[0] if lines else ""
