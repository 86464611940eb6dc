"""Who may use the dashboard: one-time login links, browser sessions and their page keys.

The bearer token must never sit in a URL a browser keeps (history, Referer), so `tierd open`
asks the daemon, with the token, for a one-time link: single use, valid `LINK_TTL_S` seconds.
Following it starts a session made of two secrets:

- the session id, in an HttpOnly, SameSite=Strict cookie named after this daemon's port;
- the page key, handed to the page once, in the fragment of the login redirect (a fragment
  is never sent to any server), kept by the page in its origin's storage and sent back as
  `X-Tierd-CSRF` on every request.

Why both: cookies are not isolated by port. Every page served from 127.0.0.1 (any port) is
the same *site*, so SameSite does not stop the browser from sending the cookie to another
local server the user is lured to, which could then replay it from any HTTP client. The page
key never leaves this origin (storage is per origin, port included), so a cookie alone opens
nothing. And a page on another origin cannot send the header without a CORS preflight,
which the guard refuses: that, and the Origin check below, is the CSRF defence.

`authenticate` wants, besides the cookie of a live session and its page key: no sign that
the request came from another origin (`Sec-Fetch-Site`, `Origin`), and for anything but GET
and HEAD an `Origin` naming this daemon itself.

Everything lives in memory: a restart of the daemon ends every session. Secrets are kept only
as digests, so a lookup's timing says nothing about them; links and sessions are capped, so
minting links in a loop cannot grow the daemon.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from daemon.api.guard import host_name, is_loopback_name

__all__ = [
    "CSRF_HEADER",
    "LINK_TTL_S",
    "LOGIN_LINKS_PATH",
    "SESSION_TTL_S",
    "DashboardSessions",
    "Login",
    "header_values",
]

Scope = MutableMapping[str, Any]

#: Seconds a login link stays valid.
LINK_TTL_S = 60.0
#: Seconds a session lasts from its login, however active (then `tierd open` again).
SESSION_TTL_S = 12 * 3600.0
#: The header that carries the session's page key, on every request of the page.
CSRF_HEADER = "x-tierd-csrf"
#: The bearer-only endpoint that mints login links: a session cannot mint more sessions.
LOGIN_LINKS_PATH = "/v1/dashboard/login-links"
#: Paths the dashboard answers itself, whoever asks (the page shell and its assets hold no
#: data; the login link and logout check what they need on their own).
_OPEN_EXACT = frozenset({"/", "/logout"})
_OPEN_PREFIXES = ("/login/", "/dashboard/assets/")
_SAFE_METHODS = frozenset({"GET", "HEAD"})
#: What Sec-Fetch-Site says of a request the dashboard itself (or the user typing a URL) made.
_OWN_FETCH_SITES = frozenset({"same-origin", "none"})
#: The port at the end of a Host header ("127.0.0.1:8737", "[::1]:8737").
_HOST_PORT = re.compile(r".*:(\d{1,5})")
#: Most links and sessions kept at once; the oldest goes first.
MAX_LINKS = 16
MAX_SESSIONS = 64


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()


def header_values(scope: Scope, name: str) -> list[str]:
    """Every value of header `name` (lower case) in an ASGI scope, in order."""
    wanted = name.encode("latin-1")
    return [v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == wanted]


def _header(scope: Scope, name: str) -> str | None:
    values = header_values(scope, name)
    return values[0] if len(values) == 1 else None  # none, or ambiguous


def _cookie(scope: Scope, name: str) -> str | None:
    found = None
    for header in header_values(scope, "cookie"):
        for part in header.split(";"):
            key, sep, value = part.strip().partition("=")
            if sep and key == name:
                if found is not None:
                    return None  # two cookies of this name: which one is ours is unclear
                found = value.strip()
    return found


@dataclass(frozen=True)
class Login:
    """A session just started by a login link: the id goes into the cookie, the page key
    into the page's own storage."""

    session_id: str
    csrf: str


@dataclass
class _Session:
    csrf: str
    expires_at: float


class DashboardSessions:
    """The login links handed out and the sessions they started (in memory)."""

    def __init__(
        self,
        *,
        link_ttl_s: float = LINK_TTL_S,
        session_ttl_s: float = SESSION_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.link_ttl_s = link_ttl_s
        self.session_ttl_s = session_ttl_s
        self._clock = clock
        # digest -> expiry; dicts keep insertion order, so the first key is the oldest.
        self._links: dict[bytes, float] = {}
        self._sessions: dict[bytes, _Session] = {}

    # --- links and logins ----------------------------------------------------------------

    def issue_link(self) -> str:
        """A new one-time login secret (the last part of /login/<secret>)."""
        secret = secrets.token_urlsafe(32)
        self._prune()
        while len(self._links) >= MAX_LINKS:
            del self._links[next(iter(self._links))]
        self._links[_digest(secret)] = self._clock() + self.link_ttl_s
        return secret

    def redeem(self, secret: str) -> Login | None:
        """Start a session with a login secret; None if it is unknown, used or expired.

        The secret is gone after the first try, valid or not."""
        expires_at = self._links.pop(_digest(secret), None)
        if expires_at is None or self._clock() >= expires_at:
            return None
        self._prune()
        while len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[next(iter(self._sessions))]
        login = Login(session_id=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32))
        self._sessions[_digest(login.session_id)] = _Session(
            csrf=login.csrf, expires_at=self._clock() + self.session_ttl_s
        )
        return login

    def _prune(self) -> None:
        now = self._clock()
        for key in [k for k, exp in self._links.items() if now >= exp]:
            del self._links[key]
        for key in [k for k, s in self._sessions.items() if now >= s.expires_at]:
            del self._sessions[key]

    # --- requests ------------------------------------------------------------------------

    @staticmethod
    def cookie_name(scope: Scope) -> str:
        """The session cookie's name, after the port the browser addressed: cookies are per
        host, not per port, so two daemons on one host (or one daemon reached through two
        ports, e.g. a tunnel) would otherwise overwrite each other's session."""
        found = _HOST_PORT.fullmatch((_header(scope, "host") or "").strip())
        port = found.group(1) if found else str((scope.get("server") or ("", 80))[1])
        return f"tierd_session_{port}"

    def _session(self, scope: Scope) -> _Session | None:
        session_id = _cookie(scope, self.cookie_name(scope))
        if not session_id:
            return None
        key = _digest(session_id)
        session = self._sessions.get(key)
        if session is not None and self._clock() >= session.expires_at:
            del self._sessions[key]
            return None
        return session

    @staticmethod
    def admits_origin(origin: str, host: str) -> bool:
        """True when `origin` is this daemon's own origin as the request names it: a page
        the daemon served itself, at a loopback name (the guard's Host rule)."""
        if not is_loopback_name(host_name(host)):
            return False
        return origin.rstrip("/").lower() == f"http://{host.strip().lower()}"

    def _from_own_page(self, scope: Scope, *, need_origin: bool) -> bool:
        site = _header(scope, "sec-fetch-site")
        if site is not None and site.lower() not in _OWN_FETCH_SITES:
            return False
        origin = _header(scope, "origin")
        if origin is None:
            return not need_origin and not header_values(scope, "origin")
        return self.admits_origin(origin, _header(scope, "host") or "")

    def authenticate(self, scope: Scope) -> bool:
        """True when a browser session may make this request (the guard asks, for requests
        without an Authorization header): its cookie, its page key, from its own page."""
        if scope.get("path") == LOGIN_LINKS_PATH:
            return False  # only the bearer token mints login links
        session = self._session(scope)
        supplied = _header(scope, CSRF_HEADER)
        if session is None or supplied is None:
            return False
        if not hmac.compare_digest(supplied.encode("latin-1"), session.csrf.encode()):
            return False
        return self._from_own_page(scope, need_origin=scope.get("method") not in _SAFE_METHODS)

    def end(self, scope: Scope) -> bool:
        """Log out: end the request's session if the request passes `authenticate`."""
        if not self.authenticate(scope):
            return False
        session_id = _cookie(scope, self.cookie_name(scope)) or ""
        return self._sessions.pop(_digest(session_id), None) is not None

    @staticmethod
    def open_path(path: str) -> bool:
        """True for the paths the dashboard answers whoever asks (the guard lets them
        through without a token; each checks what it needs itself)."""
        return path in _OPEN_EXACT or path.startswith(_OPEN_PREFIXES)
