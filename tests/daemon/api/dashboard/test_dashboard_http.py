"""The dashboard's HTTP side against a real daemon: its pages, the one-time login link, the
session cookie, CSRF and Origin rules, logout, and that the bearer token keeps working.

No browser here: each rule is checked with exactly the headers a browser would (or would
not) send, including the ones a hostile page on another loopback port can make it send.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from dashboard_kit import FAST, DashboardDaemon, plan
from support import ROOT
from support.daemon import write_config
from support.simulator import running_simulator


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardDaemon]:
    home = tmp_path_factory.mktemp("home")
    with running_simulator({"latency": {k: 30.0 for k in FAST}, "plan": plan({"id": "a"})}) as sim:
        write_config(home, sim.url)
        d = DashboardDaemon(home, home / "clock").start()
        try:
            yield d
        finally:
            d.cancel_live_tasks()
            d.stop()


def _origin(daemon: DashboardDaemon) -> str:
    return daemon.url


def _login(daemon: DashboardDaemon) -> tuple[httpx.Client, str]:
    """A client signed in through a fresh link (it holds the cookie), and the page key."""
    link = daemon.login_link()
    client = httpx.Client(base_url=daemon.url, timeout=30.0)
    answer = client.get(urlsplit(link).path)
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    assert location.startswith("/#session=")
    return client, location.removeprefix("/#session=")


def test_the_page_and_its_assets_need_no_token_and_carry_a_strict_policy(
    daemon: DashboardDaemon,
) -> None:
    with httpx.Client(base_url=daemon.url) as h:
        page = h.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "no-referrer"
        script = h.get("/dashboard/assets/js/app.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        again = h.get(
            "/dashboard/assets/js/app.js", headers={"if-none-match": script.headers["etag"]}
        )
        assert again.status_code == 304
        # Only files of the index: an encoded "../" names no entry of it.
        for path in ("/dashboard/assets/%2e%2e/sessions.py", "/dashboard/assets/nope.js"):
            assert h.get(path).status_code == 404
        # Nothing else became open: the API still wants a token.
        assert h.get("/v1/tasks").status_code == 401
        assert h.get("/dashboard").status_code == 401


def test_the_host_and_origin_rules_cover_the_dashboard(daemon: DashboardDaemon) -> None:
    with httpx.Client(base_url=daemon.url) as h:
        assert h.get("/", headers={"host": "evil.example"}).status_code == 421
        link = urlsplit(daemon.login_link()).path
        refused = h.get(link, headers={"origin": "http://127.0.0.1:1"})
        assert refused.status_code == 403


def test_a_login_link_needs_the_token_works_once_and_sets_a_strict_cookie(
    daemon: DashboardDaemon,
) -> None:
    with httpx.Client(base_url=daemon.url) as h:
        assert h.post("/v1/dashboard/login-links").status_code == 401
    link = daemon.login_link()
    parts = urlsplit(link)
    assert f"{parts.scheme}://{parts.netloc}" == daemon.url
    with httpx.Client(base_url=daemon.url) as h:
        first = h.get(parts.path)
        assert first.status_code == 303
        # The page key rides in the fragment: a browser never sends it to any server.
        key = first.headers["location"].removeprefix("/#session=")
        assert len(key) >= 40 and key not in link
        cookie = first.headers["set-cookie"]
        port = parts.port
        assert cookie.startswith(f"tierd_session_{port}=")
        for attribute in ("HttpOnly", "SameSite=strict", "Path=/"):
            assert attribute.lower() in cookie.lower(), cookie
        assert "max-age" not in cookie.lower()  # ends with the browser session
        assert first.headers["cache-control"] == "no-store"
        assert h.get("/v1/tasks", headers={"x-tierd-csrf": key}).status_code == 200
    with httpx.Client(base_url=daemon.url) as h:
        second = h.get(parts.path)
        assert second.status_code == 403
        assert "does not work" in second.text
        assert "set-cookie" not in second.headers


def test_a_login_link_expires_after_60_seconds(daemon: DashboardDaemon) -> None:
    link = urlsplit(daemon.login_link()).path
    daemon.skew_clock(59)
    try:
        with httpx.Client(base_url=daemon.url) as h:
            assert h.get(link).status_code == 303
        link = urlsplit(daemon.login_link()).path
        daemon.skew_clock(59 + 61)
        with httpx.Client(base_url=daemon.url) as h:
            assert h.get(link).status_code == 403
    finally:
        daemon.skew_clock(0)


def test_a_session_needs_its_cookie_and_page_key_and_changes_only_from_its_own_origin(
    daemon: DashboardDaemon,
) -> None:
    client, key = _login(daemon)
    own = {"origin": _origin(daemon)}
    body = {"goal": "From the dashboard"}
    with closing(client):
        # A cookie alone (what another local server the browser visits would get) reads
        # nothing; the key alone neither.
        assert client.get("/v1/tasks").status_code == 401
        with httpx.Client(base_url=daemon.url) as keyonly:
            assert keyonly.get("/v1/tasks", headers={"x-tierd-csrf": key}).status_code == 401
        page = {"x-tierd-csrf": key}
        assert client.get("/v1/tasks", headers=page).status_code == 200
        assert client.get("/v1/status", headers=page).status_code == 200
        # Changing something: the key and the daemon's own Origin, both.
        assert client.post("/v1/tasks", json=body).status_code == 401
        assert client.post("/v1/tasks", json=body, headers=own).status_code == 401
        assert client.post("/v1/tasks", json=body, headers=page).status_code == 401
        wrong = {"x-tierd-csrf": key[:-2] + "xx", **own}
        assert client.post("/v1/tasks", json=body, headers=wrong).status_code == 401
        foreign = {**page, "origin": "http://127.0.0.1:1"}
        assert client.post("/v1/tasks", json=body, headers=foreign).status_code == 403
        rpc = {"jsonrpc": "2.0", "id": 1, "method": "task/list", "params": {}}
        assert client.post("/rpc", json=rpc, headers=page).status_code == 401
        ok = client.post("/v1/tasks", json=body, headers={**page, **own})
        assert ok.status_code == 202, ok.text
        assert client.post("/rpc", json=rpc, headers={**page, **own}).status_code == 200
        # A read the browser marks as coming from another site does not count either.
        cross = {**page, "sec-fetch-site": "same-site"}
        assert client.get("/v1/tasks", headers=cross).status_code == 401
        same = {**page, "sec-fetch-site": "same-origin"}
        assert client.get("/v1/tasks", headers=same).status_code == 200
        # A session cannot mint login links: only the token can.
        minted = client.post("/v1/dashboard/login-links", headers={**page, **own})
        assert minted.status_code == 401
        # A wrong bearer token is not rescued by a good session.
        bad = {**page, "authorization": "Bearer nope"}
        assert client.get("/v1/tasks", headers=bad).status_code == 401
        assert client.get("/v1/tasks?token=x", headers=page).status_code == 401


def test_a_cookie_of_another_port_or_a_made_up_session_is_refused(
    daemon: DashboardDaemon,
) -> None:
    client, key = _login(daemon)
    page = {"x-tierd-csrf": key}
    with closing(client):
        name, value = next(iter(client.cookies.items()))
    with httpx.Client(base_url=daemon.url, cookies={name: value}) as h:
        assert h.get("/v1/tasks", headers=page).status_code == 200
    with httpx.Client(base_url=daemon.url, cookies={"tierd_session_1": value}) as h:
        assert h.get("/v1/tasks", headers=page).status_code == 401
    with httpx.Client(base_url=daemon.url, cookies={name: "made-up"}) as h:
        assert h.get("/v1/tasks", headers=page).status_code == 401


def test_logout_ends_the_session_and_clears_the_cookie(daemon: DashboardDaemon) -> None:
    client, key = _login(daemon)
    page = {"x-tierd-csrf": key}
    with closing(client):
        name = next(iter(client.cookies.keys()))
        # A logout without the page key does not end the session (but clears the cookie of
        # that client, which is all a page may do to itself).
        session_cookie = {name: client.cookies[name]}
        with httpx.Client(base_url=daemon.url, cookies=session_cookie) as other:
            assert other.post("/logout").json() == {"logged_out": False}
        assert client.get("/v1/tasks", headers=page).status_code == 200
        out = client.post("/logout", headers={**page, "origin": _origin(daemon)})
        assert out.json() == {"logged_out": True}
        assert "max-age=0" in out.headers["set-cookie"].lower()
    with httpx.Client(base_url=daemon.url, cookies=session_cookie) as h:
        assert h.get("/v1/tasks", headers=page).status_code == 401


def test_the_bearer_token_keeps_working_and_the_link_endpoint_is_documented(
    daemon: DashboardDaemon,
) -> None:
    with daemon.http() as h:
        assert h.get("/v1/tasks").status_code == 200
        assert h.get("/v1/tasks", headers={"origin": "http://127.0.0.1:1"}).status_code == 403
        schema = h.get("/openapi.json").json()
    assert "/v1/dashboard/login-links" in schema["paths"]
    assert "/" not in schema["paths"] and "/login/{secret}" not in schema["paths"]


def test_the_daemon_home_is_untouched_by_sessions(daemon: DashboardDaemon) -> None:
    """Sessions live in memory only: nothing about them is written to the home."""
    _login(daemon)[0].close()
    names = {p.name for p in Path(daemon.home).iterdir()}
    assert not any("session" in n for n in names), names


def _has_open_command() -> bool:
    from daemon.cli.parser import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return "open" in commands.choices


def test_tierd_open_prints_a_link_that_signs_a_browser_in(daemon: DashboardDaemon) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "open", "--no-browser", "--json"],
        cwd=ROOT,
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    link = json.loads(run.stdout)
    assert link["expires_in_s"] == 60
    with httpx.Client() as h:
        assert h.get(link["url"]).status_code == 303
        assert h.get(link["url"]).status_code == 403
