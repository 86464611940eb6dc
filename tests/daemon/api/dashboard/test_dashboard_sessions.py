"""`DashboardSessions` on its own, with a clock the test moves: links, sessions, the page key
and Origin rules of `authenticate`; and the shipped files: only what `static/` holds is served,
and no script turns a string into markup or code."""

from __future__ import annotations

import re
from typing import Any

import pytest

from daemon.api.dashboard import Assets, DashboardSessions
from daemon.api.dashboard.assets import STATIC_DIR
from daemon.api.dashboard.sessions import MAX_LINKS, MAX_SESSIONS

HOST = "127.0.0.1:8737"
OWN = f"http://{HOST}"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _scope(
    method: str = "GET",
    path: str = "/v1/tasks",
    cookie: str | None = None,
    **headers: str,
) -> dict[str, Any]:
    pairs = [(b"host", HOST.encode())]
    if cookie is not None:
        pairs.append((b"cookie", f"tierd_session_8737={cookie}".encode()))
    pairs += [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return {
        "type": "http",
        "method": method,
        "path": path,
        "headers": pairs,
        "server": ("127.0.0.1", 8737),
    }


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sessions(clock: Clock) -> DashboardSessions:
    return DashboardSessions(clock=clock)


def test_a_link_works_once(sessions: DashboardSessions) -> None:
    link = sessions.issue_link()
    assert len(link) >= 40
    login = sessions.redeem(link)
    assert login is not None and login.session_id != login.csrf
    assert sessions.redeem(link) is None
    assert sessions.redeem("never-issued") is None


def test_a_link_expires_after_60_seconds(sessions: DashboardSessions, clock: Clock) -> None:
    fresh, late = sessions.issue_link(), sessions.issue_link()
    clock.now += 59.9
    assert sessions.redeem(fresh) is not None
    clock.now += 0.1
    assert sessions.redeem(late) is None


def test_the_ttl_is_injectable(clock: Clock) -> None:
    short = DashboardSessions(link_ttl_s=1.0, clock=clock)
    link = short.issue_link()
    clock.now += 1.0
    assert short.redeem(link) is None


def test_links_and_sessions_are_capped(sessions: DashboardSessions) -> None:
    links = [sessions.issue_link() for _ in range(MAX_LINKS + 5)]
    assert sessions.redeem(links[0]) is None  # the oldest went first
    assert sessions.redeem(links[-1]) is not None
    ids = []
    for _ in range(MAX_SESSIONS + 3):
        login = sessions.redeem(sessions.issue_link())
        assert login is not None
        ids.append((login.session_id, login.csrf))
    assert not sessions.authenticate(_scope(cookie=ids[0][0], x_tierd_csrf=ids[0][1]))
    assert sessions.authenticate(_scope(cookie=ids[-1][0], x_tierd_csrf=ids[-1][1]))


def test_a_session_reads_with_its_cookie_and_key_from_its_own_page(
    sessions: DashboardSessions, clock: Clock
) -> None:
    login = sessions.redeem(sessions.issue_link())
    assert login is not None
    sid, key = login.session_id, login.csrf
    assert sessions.authenticate(_scope(cookie=sid, x_tierd_csrf=key))
    assert sessions.authenticate(_scope(cookie=sid, x_tierd_csrf=key, sec_fetch_site="none"))
    assert sessions.authenticate(_scope(cookie=sid, x_tierd_csrf=key, origin=OWN))
    assert sessions.authenticate(_scope(cookie=sid, x_tierd_csrf=key, sec_fetch_site="same-origin"))
    # A stolen cookie alone (cookies reach every port of the host) opens nothing.
    assert not sessions.authenticate(_scope(cookie=sid))
    assert not sessions.authenticate(_scope(x_tierd_csrf=key))
    assert not sessions.authenticate(_scope(cookie=sid, x_tierd_csrf=key + "x"))
    for site in ("same-site", "cross-site"):
        assert not sessions.authenticate(_scope(cookie=sid, x_tierd_csrf=key, sec_fetch_site=site))
    foreign = _scope(cookie=sid, x_tierd_csrf=key, origin="http://127.0.0.1:1")
    assert not sessions.authenticate(foreign)
    assert not sessions.authenticate(_scope(cookie="forged", x_tierd_csrf=key))
    clock.now += sessions.session_ttl_s
    assert not sessions.authenticate(_scope(cookie=sid, x_tierd_csrf=key))


def test_a_change_needs_the_key_and_the_daemons_own_origin(sessions: DashboardSessions) -> None:
    login = sessions.redeem(sessions.issue_link())
    assert login is not None
    sid, key = login.session_id, login.csrf
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert not sessions.authenticate(_scope(method, cookie=sid))
        assert not sessions.authenticate(_scope(method, cookie=sid, origin=OWN))
        assert not sessions.authenticate(_scope(method, cookie=sid, x_tierd_csrf=key))
        assert not sessions.authenticate(
            _scope(method, cookie=sid, x_tierd_csrf=key + "x", origin=OWN)
        )
        assert not sessions.authenticate(
            _scope(method, cookie=sid, x_tierd_csrf=key, origin="http://localhost:8737")
        )
        assert sessions.authenticate(_scope(method, cookie=sid, x_tierd_csrf=key, origin=OWN))
    # Only the bearer token mints login links.
    assert not sessions.authenticate(
        _scope("POST", "/v1/dashboard/login-links", cookie=sid, x_tierd_csrf=key, origin=OWN)
    )
    # A WebSocket carries no method (and a browser cannot add the header to one): refused.
    ws = _scope(cookie=sid, x_tierd_csrf=key)
    del ws["method"]
    assert not sessions.authenticate(ws)


def test_two_cookies_of_the_same_name_are_refused(sessions: DashboardSessions) -> None:
    login = sessions.redeem(sessions.issue_link())
    assert login is not None
    scope = _scope(cookie=login.session_id, x_tierd_csrf=login.csrf)
    assert sessions.authenticate(scope)
    scope["headers"].append((b"cookie", b"tierd_session_8737=other"))
    assert not sessions.authenticate(scope)


def test_end_needs_what_a_change_needs(sessions: DashboardSessions) -> None:
    login = sessions.redeem(sessions.issue_link())
    assert login is not None
    assert not sessions.end(_scope("POST", "/logout", cookie=login.session_id))
    ending = _scope("POST", "/logout", cookie=login.session_id, x_tierd_csrf=login.csrf, origin=OWN)
    assert sessions.end(ending)
    assert not sessions.authenticate(_scope(cookie=login.session_id, x_tierd_csrf=login.csrf))


def test_own_origin_and_open_paths() -> None:
    admits = DashboardSessions.admits_origin
    assert admits("http://127.0.0.1:8737", "127.0.0.1:8737")
    assert admits("http://localhost:8737/", "LOCALHOST:8737")
    assert admits("http://[::1]:8737", "[::1]:8737")
    assert not admits("http://127.0.0.1:8738", "127.0.0.1:8737")
    assert not admits("https://127.0.0.1:8737", "127.0.0.1:8737")
    assert not admits("http://evil.example:8737", "evil.example:8737")  # rebinding: not loopback
    assert not admits("null", "127.0.0.1:8737")
    open_path = DashboardSessions.open_path
    for path in ("/", "/logout", "/login/abc", "/dashboard/assets/app.css"):
        assert open_path(path), path
    for path in ("/v1/tasks", "/rpc", "/login", "/dashboard/session", "/v1/dashboard/login-links"):
        assert not open_path(path), path
    name = DashboardSessions.cookie_name
    assert name({"headers": [(b"host", b"127.0.0.1:9000")]}) == "tierd_session_9000"
    assert name({"headers": [(b"host", b"[::1]:9001")]}) == "tierd_session_9001"
    # No port in the Host header: the port the daemon listens on.
    assert name({"headers": [(b"host", b"[::1]")], "server": ("::1", 80)}) == "tierd_session_80"


def test_only_the_files_of_static_are_served() -> None:
    assets = Assets()
    names = assets.names()
    assert {"index.html", "app.css", "js/app.js", "js/markdown.js", "login_failed.html"} <= set(
        names
    )
    assert assets.get("../sessions.py") is None and assets.get("/etc/passwd") is None
    script = assets.get("js/app.js")
    assert script is not None and script.media_type.startswith("text/javascript")


#: What would turn a string into markup or code in the page.
_UNSAFE = re.compile(
    r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|"
    r"setTimeout\(\s*[\"'`]|srcdoc|createContextualFragment|DOMParser"
)


def test_no_script_builds_markup_from_strings() -> None:
    found = []
    for path in sorted(STATIC_DIR.rglob("*.js")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip().startswith(("//", "*", "/*")):
                continue  # a comment may name what the code never does
            if _UNSAFE.search(line):
                found.append(f"{path.relative_to(STATIC_DIR)}:{number}: {line.strip()}")
    assert found == []


def test_the_pages_have_no_inline_code_and_fetch_nothing_from_elsewhere() -> None:
    for path in sorted(STATIC_DIR.rglob("*")):
        if path.suffix not in {".html", ".js", ".css"}:
            continue
        text = path.read_text(encoding="utf-8")
        # No CDN, no other server: every URL the page loads is its own.
        assert not re.search(r"(src|href)=[\"']https?:", text), path
        assert "@import" not in text and "url(http" not in text, path
        if path.suffix == ".html":
            assert not re.search(r"<script(?![^>]*\bsrc=)", text), path  # CSP: no inline code
            assert "<style" not in text and " style=" not in text, path
            assert not re.search(r"<[^>]*\son\w+\s*=", text), path  # no inline handlers
