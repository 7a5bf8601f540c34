"""Who may use the web page of ``edgevision watch``: a token, a hashed password, sessions and their CSRF tokens.

A password is kept only as an scrypt hash (``scrypt$N$r$p$salt$hash``, standard library
only); ``edgevision watch --hash-password`` makes one. Secrets are compared in constant
time. A session is a random id with its own CSRF token, which every write must carry in a
header. Sessions are kept in a small SQLite file beside the data (``sessions.db``), so a
restart or an update of the watcher does not log everyone out: the file holds only a
SHA-256 of each session id (a copy of it opens no session), and a salted scrypt fingerprint
of the login secrets, so a new token or password ends every session made under the old ones.

>>> stored = hash_password("correct horse battery")
>>> verify_password("correct horse battery", stored), verify_password("wrong", stored)
(True, False)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import sqlite3
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

SCHEME = "scrypt"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # ~16 MB and ~50 ms per check: slow to guess, quick to log in
MIN_PASSWORD = 8
MAX_SESSIONS = 256  # the oldest session goes when a new one would pass this
SESSIONS_FILE = "sessions.db"
_SESSIONS_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id_hash TEXT PRIMARY KEY,    -- SHA-256 of the cookie value, never the value itself
    csrf TEXT NOT NULL,
    expires REAL NOT NULL        -- time.time() seconds
);
CREATE TABLE IF NOT EXISTS login (  -- one row: what the sessions were made under
    salt BLOB NOT NULL,
    fingerprint BLOB NOT NULL    -- scrypt of the token and password hash: new ones end the sessions
);
"""


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
    """Sessions, each ``hours`` long; the oldest is dropped beyond ``MAX_SESSIONS``.

    With ``path`` they are also kept in SQLite there, so a new ``Sessions`` on the same file
    (after a restart) knows them; ``login_secrets`` is what the logins are checked against (the token
    and the password hash), and a session made under other secrets is not taken. Memory stays
    the first place looked in: a file that cannot be written (a full disk) costs a warning, and
    sessions then last until the next restart only.
    """

    def __init__(self, *, hours: float, path: Path | None = None, login_secrets: str = "") -> None:
        self.seconds = hours * 3600.0
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._warned = False
        self._db = _open_sessions(path) if path is not None else None
        if self._db is not None:
            self._check_login(login_secrets)

    def new(self) -> Session:
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), time.time() + self.seconds)
        with self._lock:
            self._forget_ended()
            while len(self._sessions) >= MAX_SESSIONS:
                self._sessions.pop(next(iter(self._sessions)))
            self._sessions[session.id] = session
            newest = "SELECT id_hash FROM sessions ORDER BY expires DESC LIMIT ?"
            self._keep(
                ("DELETE FROM sessions WHERE expires <= ?", (time.time(),)),
                ("INSERT INTO sessions VALUES (?, ?, ?)", (_hashed(session.id), session.csrf, session.expires)),
                (f"DELETE FROM sessions WHERE id_hash NOT IN ({newest})", (MAX_SESSIONS,)),
            )
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session of cookie value ``session_id``, or None."""
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id) or self._stored(session_id)
        return session if session is not None and session.expires > time.time() else None

    def end(self, session_id: str | None) -> None:
        with self._lock:
            self._sessions.pop(session_id or "", None)
            self._keep(("DELETE FROM sessions WHERE id_hash = ?", (_hashed(session_id or ""),)))

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _stored(self, session_id: str) -> Session | None:
        """The session kept in the file (made before a restart), under the current secrets."""
        if self._db is None:
            return None
        sql = "SELECT csrf, expires FROM sessions WHERE id_hash = ?"
        try:
            row = self._db.execute(sql, (_hashed(session_id),)).fetchone()
        except sqlite3.Error:
            return None
        if row is None:
            return None
        session = Session(session_id, row[0], row[1])
        self._sessions[session_id] = session
        return session

    def _check_login(self, login_secrets: str) -> None:
        """End the kept sessions when the login secrets are not the ones they were made under."""
        try:
            row = self._db.execute("SELECT salt, fingerprint FROM login").fetchone()
        except sqlite3.Error:
            row = None
        if row is not None and hmac.compare_digest(
            _scrypt(login_secrets, row[0], SCRYPT_N, SCRYPT_R, SCRYPT_P), row[1]
        ):
            return
        salt = secrets.token_bytes(16)
        fingerprint = _scrypt(login_secrets, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
        if row is not None:
            logger.info("the login changed: the sessions made before it are ended")
        self._keep(
            ("DELETE FROM sessions", ()),
            ("DELETE FROM login", ()),
            ("INSERT INTO login VALUES (?, ?)", (salt, fingerprint)),
        )

    def _keep(self, *statements: tuple[str, tuple]) -> None:
        """Run ``statements`` on the file in one transaction; a failure is one warning, and memory still holds."""
        if self._db is None:
            return
        try:
            with self._db:
                for sql, values in statements:
                    self._db.execute(sql, values)
        except sqlite3.Error as exc:
            if not self._warned:
                self._warned = True
                logger.warning("sessions are not kept across restarts: cannot write them (%s)", exc)

    def _forget_ended(self) -> None:
        now = time.time()
        for ended in [k for k, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[ended]


def _hashed(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _open_sessions(path: Path) -> sqlite3.Connection | None:
    """The session file at ``path`` (created, readable by its owner only), or None with a warning."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600, exist_ok=True)
        db = sqlite3.connect(path, check_same_thread=False)
        db.execute("PRAGMA journal_mode = WAL")
        db.executescript(_SESSIONS_SCHEMA)
        return db
    except (OSError, sqlite3.Error) as exc:
        logger.warning("sessions are not kept across restarts: cannot open %s (%s)", path, exc)
        return None


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
