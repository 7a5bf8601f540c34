"""Who may use the web page of ``edgevision watch``: a token, a hashed password, sessions and their CSRF tokens.

A password is kept only as an scrypt hash (``scrypt$N$r$p$salt$hash``, standard library
only); ``edgevision watch --hash-password`` makes one. Secrets are compared in constant
time. A session is a random id held in memory, so a restart logs everyone out, and each
session has its own CSRF token that every write must carry in a header.

>>> stored = hash_password("correct horse battery")
>>> verify_password("correct horse battery", stored), verify_password("wrong", stored)
(True, False)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass

SCHEME = "scrypt"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # ~16 MB and ~50 ms per check: slow to guess, quick to log in
MIN_PASSWORD = 8
MAX_SESSIONS = 256  # the oldest session goes when a new one would pass this


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """``password`` as ``scrypt$N$r$p$salt$hash`` (base64url), to put in ``web.auth.password_hash``."""
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"a password needs at least {MIN_PASSWORD} characters, got {len(password)}")
    salt = salt or secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"{SCHEME}${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def parse_password_hash(stored: str) -> tuple[int, int, int, bytes, bytes]:
    """``(N, r, p, salt, hash)`` of a stored hash; ValueError with a sentence when it is not one."""
    parts = stored.split("$")
    try:
        if len(parts) != 6 or parts[0] != SCHEME:
            raise ValueError
        n, r, p = (int(v) for v in parts[1:4])
        salt, digest = _unb64(parts[4]), _unb64(parts[5])
        if n < 2 or n & (n - 1) or not (1 <= r <= 64 and 1 <= p <= 16) or len(salt) < 8 or len(digest) < 16:
            raise ValueError
    except ValueError:
        raise ValueError(
            "expected a hash made by 'edgevision watch --hash-password' (scrypt$N$r$p$salt$hash)"
        ) from None
    return n, r, p, salt, digest


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` is the one hashed in ``stored`` (constant-time comparison)."""
    n, r, p, salt, digest = parse_password_hash(stored)
    return hmac.compare_digest(_scrypt(password, salt, n, r, p, len(digest)), digest)


def same_secret(given: str | None, expected: str | None) -> bool:
    """``given == expected`` in constant time; never true when either is missing."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int = 32) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r + 2**20, dklen=length)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise ValueError(text) from None


@dataclass(frozen=True)
class Session:
    """A logged-in browser: its cookie value, its CSRF token, and when it ends (``time.time()`` seconds)."""

    id: str
    csrf: str
    expires: float


class Sessions:
    """Sessions in memory, each ``hours`` long; the oldest is dropped beyond ``MAX_SESSIONS``."""

    def __init__(self, *, hours: float) -> None:
        self.seconds = hours * 3600.0
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def new(self) -> Session:
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), time.time() + self.seconds)
        with self._lock:
            self._forget_ended()
            while len(self._sessions) >= MAX_SESSIONS:
                self._sessions.pop(next(iter(self._sessions)))
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session of cookie value ``session_id``, or None."""
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
        return session if session is not None and session.expires > time.time() else None

    def end(self, session_id: str | None) -> None:
        with self._lock:
            self._sessions.pop(session_id or "", None)

    def _forget_ended(self) -> None:
        now = time.time()
        for ended in [k for k, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[ended]


class Throttle:
    """At most ``failures`` failed logins per client address in ``window_s`` seconds."""

    def __init__(self, *, failures: int = 10, window_s: float = 60.0) -> None:
        self.failures, self.window_s = failures, window_s
        self._failed: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, client: str) -> bool:
        with self._lock:
            recent = self._recent(client)
            return len(recent) >= self.failures

    def failed(self, client: str) -> None:
        with self._lock:
            self._recent(client).append(time.monotonic())

    def _recent(self, client: str) -> deque[float]:
        if len(self._failed) > 4096:  # many addresses: forget the quiet ones
            self._failed = {k: v for k, v in self._failed.items() if v and v[-1] > time.monotonic() - self.window_s}
        recent = self._failed.setdefault(client, deque())
        while recent and recent[0] <= time.monotonic() - self.window_s:
            recent.popleft()
        return recent
