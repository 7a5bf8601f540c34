"""Access to the web page and API of ``edgevision watch``: login, sessions, CSRF checks and security headers.

Without ``web.auth`` (allowed on a loopback address only) anyone on this machine may read,
and nobody may write; a read addressed to another host name is refused, so a web site
whose name is made to resolve to 127.0.0.1 (DNS rebinding) cannot read through a browser. With it, every read needs a session or the token, and every
write needs either ``Authorization: Bearer TOKEN`` (which browsers never add by
themselves) or a session cookie together with that session's CSRF token in the
``X-CSRF-Token`` header. The session cookie is HttpOnly and SameSite=Strict; a write
whose ``Origin`` is another site is refused whatever it carries.

>>> access = Access(config.web.auth)                                   # doctest: +SKIP
>>> app.include_router(access.router())                                # doctest: +SKIP
>>> @app.get("/api/things", dependencies=[Depends(access.reader)])     # doctest: +SKIP
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel

from edgevision.watch.auth import Session, Sessions, Throttle, same_secret, verify_password
from edgevision.watch.config import AuthConfig

COOKIE = "edgevision_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
NO_WRITES = "writing needs web.auth (a token or a password_hash) in the watch config"


class Login(BaseModel):
    secret: str  # the password or the token


class Access:
    """Who the request is from, under ``auth`` (None: reads open, writes closed)."""

    def __init__(self, auth: AuthConfig | None, *, sessions: Path | None = None) -> None:
        """``sessions``: the file sessions are kept in across restarts (None: in memory only)."""
        self.auth = auth
        login = f"{auth.token or ''}\n{auth.password_hash or ''}" if auth else ""
        self.sessions = Sessions(
            hours=auth.session_hours if auth else 24.0, path=sessions if auth else None, login_secrets=login
        )
        self.throttle = Throttle()

    # -- FastAPI dependencies ------------------------------------------------------------------
    def reader(self, request: Request) -> None:
        """Let a read through: without auth, one addressed to this machine; with it, a session or the token."""
        if self.auth is None:
            _this_machine(request)
        elif not (self._bearer(request) or self._session(request)):
            raise HTTPException(401, "log in first", headers={"WWW-Authenticate": "Bearer"})

    def writer(self, request: Request) -> None:
        """Let a write through: the token, or a session with its CSRF token; never from another site."""
        _same_site(request)
        if self.auth is None:
            raise HTTPException(403, NO_WRITES)
        if self._bearer(request):
            return
        session = self._session(request)
        if session is None:
            raise HTTPException(401, "log in first", headers={"WWW-Authenticate": "Bearer"})
        if not same_secret(request.headers.get(CSRF_HEADER), session.csrf):
            raise HTTPException(403, f"missing or wrong CSRF token (send the {CSRF_HEADER} header of /api/session)")

    def _bearer(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and same_secret(token.strip(), self.auth.token)

    def _session(self, request: Request) -> Session | None:
        return self.sessions.get(request.cookies.get(COOKIE))

    def _secret_ok(self, secret: str) -> bool:
        by_token = same_secret(secret, self.auth.token)
        by_password = self.auth.password_hash is not None and verify_password(secret, self.auth.password_hash)
        return by_token or by_password

    # -- routes ----------------------------------------------------------------------------------
    def router(self) -> APIRouter:
        """``POST /api/login``, ``POST /api/logout`` and ``GET /api/session``."""
        router = APIRouter()

        @router.get("/api/session")
        def session(request: Request) -> dict:
            current = self._session(request) if self.auth else None
            signed_in = current is not None or (self.auth is not None and self._bearer(request))
            return {
                "auth": self.auth is not None,
                "signed_in": signed_in,
                "can_read": self.auth is None or signed_in,
                "can_write": signed_in,
                "csrf": current.csrf if current else None,
            }

        @router.post("/api/login")
        def login(body: Login, request: Request, response: Response) -> dict:
            _same_site(request)
            if self.auth is None:
                raise HTTPException(403, NO_WRITES)
            client = request.client.host if request.client else "?"
            if self.throttle.blocked(client):
                raise HTTPException(429, "too many failed logins; wait a minute", headers={"Retry-After": "60"})
            if not self._secret_ok(body.secret):
                self.throttle.failed(client)
                raise HTTPException(401, "wrong password or token")
            self.sessions.end(request.cookies.get(COOKIE))
            new = self.sessions.new()
            response.set_cookie(
                COOKIE,
                new.id,
                max_age=int(self.sessions.seconds),
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
                path="/",
            )
            return {"csrf": new.csrf, "expires": new.expires}

        @router.post("/api/logout")
        def logout(request: Request, response: Response) -> dict:
            _same_site(request)
            current = self._session(request)
            if current is not None and same_secret(request.headers.get(CSRF_HEADER), current.csrf):
                self.sessions.end(current.id)
            response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
            return {"signed_in": False}

        return router


def _same_site(request: Request) -> None:
    """Refuse a request a browser sent on behalf of another site (its Origin or Sec-Fetch-Site says so)."""
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise HTTPException(403, "a request from another site is refused")
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise HTTPException(403, "a request from another site is refused")


def _this_machine(request: Request) -> None:
    """Refuse a request whose Host names anything but this machine (a loopback address or ``localhost``)."""
    host = urlsplit(f"//{request.headers.get('host', '')}").hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise HTTPException(403, "without web.auth the page answers only to 127.0.0.1, ::1 or localhost")


def add_security_headers(response: Response) -> None:
    """The headers every answer carries: a strict Content-Security-Policy, no framing, no sniffing."""
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
