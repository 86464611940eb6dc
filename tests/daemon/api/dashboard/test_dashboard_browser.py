"""The dashboard in a real browser (Chromium through playwright) against a real daemon on the
simulator: sign in through a one-time link, follow a task live, answer a task's questions in
one form, reject a result with a comment and approve its revision, change a setting, log
out, and watch a page on another origin fail to drive the daemon with the user's cookie.

Screenshots of the main views at 1280×800 and 390×844 go to tests/artifacts/dashboard/.
Tests that need no model run first: the engine loads in the daemon meanwhile.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, cast

import httpx
import pytest
from dashboard_kit import (
    ARTIFACTS,
    DESKTOP,
    FAST,
    PHONE,
    CuttableProxy,
    DashboardDaemon,
    foreign_site,
    page_errors,
    plan,
    sign_in,
)
from playwright.sync_api import Browser, BrowserContext, Page, expect
from support.daemon import write_config
from support.simulator import running_simulator, use_scenario

#: A daemon and its engine loading on a busy machine take minutes: a generous limit per test.
pytestmark = pytest.mark.timeout(400)
#: A result with what a renderer must not trust: raw HTML, a javascript: link.
MERGED = (
    "# Launch plan\n\n- **Bold** claim\n- [docs](https://example.com/docs)\n"
    "- [bad](javascript:alert(1))\n\n<script>window.__pwned = 1</script>\n\n{outputs}"
)
LIVE = {
    "latency": {**FAST, "executor": 1.5},
    "plan": plan({"id": "research"}, {"id": "draft", "depends_on": ["research"]}),
}
QUESTIONS = {
    "latency": FAST,
    "plan": plan({"id": "region"}, {"id": "budget"}),
    "streams": {
        "region": {"reply": "question", "question": "Which region first?"},
        "budget": {"reply": "question", "question": "What budget?"},
    },
}
APPROVAL = {"latency": FAST, "plan": plan({"id": "draft"}), "merge_output": MERGED}
#: A daemon starting on a busy machine (other test daemons loading beside it).
START_S = 120.0
#: The first task waits for the daemon to load its engine (seconds of CPU, more when busy).
FIRST_TASK_S = 150.0
STEP_S = 60.0


@pytest.fixture(scope="module")
def sim() -> Iterator[Any]:
    with running_simulator(LIVE) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, sim: Any) -> Iterator[DashboardDaemon]:
    home = tmp_path_factory.mktemp("home")
    write_config(home, sim.url)
    d = DashboardDaemon(home, home / "clock").start(timeout=START_S)
    try:
        yield d
    finally:
        d.cancel_live_tasks()
        d.stop()


def _errors(page: Page) -> list[str]:
    return page_errors(page)


def _sign_in(browser: Browser, daemon: DashboardDaemon, viewport: dict[str, int]) -> Page:
    return cast(Page, sign_in(browser, daemon, viewport))


@pytest.fixture(scope="module")
def context(browser: Browser, daemon: DashboardDaemon) -> Iterator[BrowserContext]:
    page = _sign_in(browser, daemon, DESKTOP)
    yield page.context
    page.context.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    page = context.new_page()
    errors = _errors(page)
    yield page
    page.close()
    assert errors == []


def _shoot(page: Page, name: str) -> None:
    """The page at both sizes, full length, into the artefacts folder."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for label, size in (("1280x800", DESKTOP), ("390x844", PHONE)):
        page.set_viewport_size(size)
        page.wait_for_timeout(300)  # charts are drawn again for the new width
        if size is PHONE:
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{name} scrolls sideways at 390 px ({overflow} px)"
        page.screenshot(path=str(ARTIFACTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size(DESKTOP)


def _card(page: Page, task_id: str) -> Any:
    return page.locator(f'article.card[data-task="{task_id}"]')


# --- signing in and out (no model needed) ----------------------------------------------------


def test_sign_in_through_a_one_time_link_that_works_once(
    browser: Browser, daemon: DashboardDaemon
) -> None:
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    errors = _errors(page)
    page.goto(daemon.url + "/")
    expect(page.get_by_role("heading", name="Sign in to tierd")).to_be_visible()
    link = daemon.login_link()
    page.goto(link)
    expect(page.get_by_role("heading", name="Needs you", level=1)).to_be_visible()
    expect(page.get_by_text("Nothing needs you right now.")).to_be_visible()
    expect(page.locator("#waiting-count")).to_be_hidden()
    # Neither the link nor the page key stays in the address bar (or the history entry).
    assert page.url == daemon.url + "/#/inbox"
    assert page.evaluate("history.length") <= 3
    (cookie,) = context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert page.evaluate("document.cookie") == ""  # the page's own scripts cannot read it
    # The page key lives in this origin's storage, which no other port can read.
    assert len(page.evaluate("localStorage.getItem('tierd.sessionKey')")) >= 40
    # The same link, a second time (another browser profile): refused.
    other = browser.new_context(viewport=DESKTOP).new_page()
    other.goto(link)
    expect(other.get_by_role("heading", name="This sign-in link does not work")).to_be_visible()
    other.goto(daemon.url + "/")
    expect(other.get_by_role("heading", name="Sign in to tierd")).to_be_visible()
    # And a link older than 60 s: refused as well.
    late = daemon.login_link()
    daemon.skew_clock(61)
    try:
        other.goto(late)
        expect(other.get_by_role("heading", name="This sign-in link does not work")).to_be_visible()
    finally:
        daemon.skew_clock(0)
    other.context.close()
    context.close()
    assert errors == []


def test_log_out(browser: Browser, daemon: DashboardDaemon) -> None:
    page = _sign_in(browser, daemon, PHONE)
    key = page.evaluate("localStorage.getItem('tierd.sessionKey')")
    (cookie,) = page.context.cookies()
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Sign in to tierd")).to_be_visible()
    page.reload()
    expect(page.get_by_role("heading", name="Sign in to tierd")).to_be_visible()
    assert page.context.cookies() == []
    assert page.evaluate("localStorage.getItem('tierd.sessionKey')") is None
    # The session is over in the daemon too: its cookie and key, replayed, open nothing.
    jar = {cookie["name"]: cookie["value"]}
    with httpx.Client(base_url=daemon.url, cookies=jar) as h:
        assert h.get("/v1/tasks", headers={"x-tierd-csrf": key}).status_code == 401
    page.context.close()


def test_the_markdown_renderer_makes_no_markup_of_what_it_is_given(page: Page, daemon: Any) -> None:
    page.goto(daemon.url + "/#/inbox")
    hostile = [
        "<script>window.__pwned=1</script>",
        "<img src=x onerror=window.__pwned=1>",
        "[x](javascript:window.__pwned=1) [y](data:text/html,hi) [z](/relative) [ok](https://e.x/a)",
        "<https://auto.example/b> and <javascript:alert(1)>",
        "```\n<b>code</b>\n```",
        "| a | b |\n|---|---|\n| <i>1</i> | **2** |",
        "> quote with [link](http://q.example)\n\n1. one\n2. two\n   - nested *em*",
    ]
    found = page.evaluate(
        """async (inputs) => {
            const { renderMarkdown } = await import('/dashboard/assets/js/markdown.js');
            const box = document.createElement('div');
            for (const text of inputs) box.append(renderMarkdown(text));
            document.body.append(box);
            const tags = [...box.querySelectorAll('*')].map((e) => e.tagName.toLowerCase());
            const handlers = [...box.querySelectorAll('*')].flatMap((e) =>
                [...e.attributes].map((a) => a.name).filter((n) => n.startsWith('on')));
            const links = [...box.querySelectorAll('a')].map((a) => a.href);
            box.remove();
            return { tags, handlers, links, text: box.textContent, pwned: window.__pwned ?? null };
        }""",
        hostile,
    )
    assert not {"script", "img", "i", "b", "iframe"} & set(found["tags"]), found["tags"]
    assert found["handlers"] == []
    assert found["links"] == ["https://e.x/a", "https://auto.example/b", "http://q.example/"]
    assert "<script>window.__pwned=1</script>" in found["text"]
    assert "<b>code</b>" in found["text"]
    assert {"table", "blockquote", "ol", "ul", "em", "strong", "pre"} <= set(found["tags"])
    assert found["pwned"] is None


# --- tasks -----------------------------------------------------------------------------------


def test_a_task_from_the_form_updates_live_without_a_reload(
    page: Page, daemon: DashboardDaemon, sim: Any
) -> None:
    use_scenario(sim, LIVE)
    # Through a proxy the test can cut: another origin, so it signs in there (its own key).
    proxy = CuttableProxy(daemon.url)
    page.goto(daemon.login_link().replace(daemon.url, proxy.url))
    expect(page.get_by_role("heading", name="Needs you", level=1)).to_be_visible()
    page.goto(proxy.url + "/#/new")
    page.get_by_label("Goal").fill("Plan the product launch")
    page.get_by_label("Context").fill("Launch in March; two markets.")
    page.get_by_label("Parallelize").select_option("never")
    page.get_by_role("button", name="Submit task").click()
    page.wait_for_url(re.compile(r"#/tasks/.+"))
    task_id = page.url.split("#/tasks/")[1]
    page.evaluate("window.__sameDocument = true")
    state = page.locator('[data-field="task-state"]')
    research = page.locator('li.stream[data-stream="research"] > article [data-field="state"]')
    draft = page.locator('li.stream[data-stream="draft"] > article [data-field="state"]')
    live = page.locator("span.live")
    expect(research).to_have_text("running", timeout=FIRST_TASK_S * 1000)
    expect(draft).to_have_text("pending")
    expect(live).to_have_text("Live")
    # The connection drops mid-task: the page says so, and resumes after the last event.
    proxy.cut()
    expect(live).to_have_text("Reconnecting…", timeout=10_000)
    expect(live).to_have_text("Live", timeout=20_000)
    expect(state).to_have_text("completed", timeout=STEP_S * 1000)
    expect(research).to_have_text("accepted")
    expect(draft).to_have_text("accepted")
    assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"
    # Every event counted once, across the reconnect: the page's figures are the report's.
    report = daemon.task(task_id)["report"]
    for stream in report["streams"]:
        shown = page.locator(f'li.stream[data-stream="{stream["id"]}"] .metric', has_text="Tokens")
        figure = shown.locator("dd").inner_text().replace(",", "")
        assert int(figure) == stream["usage"]["tokens"] > 0, stream["id"]
    expect(page.get_by_role("heading", name="Report")).to_be_visible()
    expect(page.get_by_role("img", name=re.compile("When each stream ran"))).to_be_visible()
    expect(page.get_by_role("img", name=re.compile("Cost per role"))).to_be_visible()
    assert daemon.task(task_id)["options"] == {"parallelize": "never"}
    # Each stream's output and verdict history open from the keyboard.
    summary = page.locator('li.stream[data-stream="research"] summary', has_text="Output")
    summary.focus()
    page.keyboard.press("Enter")
    expect(
        page.locator('li.stream[data-stream="research"] details[open] .markdown')
    ).to_be_visible()
    _shoot(page, "task")
    proxy.close()


def test_answer_a_tasks_questions_in_one_form_and_see_it_resume(
    page: Page, daemon: DashboardDaemon, sim: Any
) -> None:
    use_scenario(sim, QUESTIONS)
    task_id = daemon.submit("Price the offer")
    daemon.wait_state(task_id, "input_required", timeout=FIRST_TASK_S)
    page.goto(daemon.url + "/#/inbox")
    card = _card(page, task_id)
    card.get_by_label("Which region first?").fill("Europe")
    card.get_by_label("What budget?").fill("Ten thousand")
    card.get_by_role("button", name="Send 2 answers").click()
    expect(card).to_have_count(0, timeout=STEP_S * 1000)
    page.goto(f"{daemon.url}/#/tasks/{task_id}")
    expect(page.locator('[data-field="task-state"]')).to_have_text(
        "completed", timeout=STEP_S * 1000
    )
    answers = page.locator("dl.answers")
    expect(answers).to_contain_text("Europe")
    expect(answers).to_contain_text("Ten thousand")


def test_reject_with_a_comment_then_approve_the_revision(
    page: Page, daemon: DashboardDaemon, sim: Any
) -> None:
    use_scenario(sim, APPROVAL)
    daemon.set_config("review.max_revisions", 1)
    try:
        task_id = daemon.submit("Write the announcement", approval="required")
        daemon.wait_state(task_id, "awaiting_approval", timeout=FIRST_TASK_S)
        page.goto(daemon.url + "/#/inbox")
        card = _card(page, task_id)
        note = card.locator(".revision-note")
        expect(note).to_have_text(
            "Rejecting asks for the last revision allowed (review.max_revisions = 1)."
        )
        result = card.get_by_role("region", name="Result")
        expect(result.get_by_role("heading", name="Launch plan")).to_be_visible()
        expect(result.get_by_role("link")).to_have_count(1)
        assert result.get_by_role("link").get_attribute("href") == "https://example.com/docs"
        expect(result).to_contain_text("<script>window.__pwned = 1</script>")
        assert page.evaluate("window.__pwned ?? null") is None
        card.get_by_label("What should change").fill("Shorter, and name the date.")
        card.get_by_role("button", name="Reject with comment").click()
        expect(card.get_by_role("heading", name=re.compile("revision 1"))).to_be_visible(
            timeout=STEP_S * 1000
        )
        expect(note).to_have_text(
            "No revision left: rejecting fails the task (review.max_revisions = 1)."
        )
        merge_prompts = [c for c in _sim_calls(sim) if c.get("purpose") == "merge"]
        assert len(merge_prompts) >= 2
        # Approve from the keyboard.
        card.get_by_role("button", name="Approve").focus()
        page.keyboard.press("Enter")
        expect(card).to_have_count(0, timeout=STEP_S * 1000)
        assert daemon.wait_state(task_id, "completed")["state"] == "completed"
    finally:
        daemon.set_config("review.max_revisions", 2)


def _sim_calls(sim: Any) -> list[dict[str, Any]]:
    return list(httpx.get(f"{sim.url}/_sim/stats", timeout=10).json()["calls"])


ATTACK = """<!doctype html><title>elsewhere</title><pre id="out">running</pre>
<form id="form" method="POST" action="{daemon}/v1/tasks/{task}/approve" enctype="text/plain">
<input name='{{"decision": "approve", "x": "' value='"}}'><button>go</button></form>
<script>
const D = "{daemon}", T = "{task}", results = {{}};
async function attempt(name, init, path) {{
  try {{
    const r = await fetch(D + path, {{credentials: "include", ...init}});
    results[name] = r.type === "opaque" ? "opaque" : r.status;
  }} catch (e) {{ results[name] = "blocked"; }}
}}
(async () => {{
  const json = {{"content-type": "application/json"}};
  const text = {{"content-type": "text/plain"}};
  await attempt("submit_json", {{method: "POST", headers: json,
    body: JSON.stringify({{goal: "evil"}})}}, "/v1/tasks");
  await attempt("submit_simple", {{method: "POST", mode: "no-cors", headers: text,
    body: JSON.stringify({{goal: "evil"}})}}, "/v1/tasks");
  await attempt("approve_rpc_simple", {{method: "POST", mode: "no-cors", headers: text,
    body: JSON.stringify({{jsonrpc: "2.0", id: 1, method: "task/approve",
      params: {{task_id: T, decision: "approve"}}}})}}, "/rpc");
  await attempt("approve_with_header", {{method: "POST",
    headers: {{...json, "x-tierd-csrf": "guessed"}},
    body: JSON.stringify({{decision: "approve"}})}}, "/v1/tasks/" + T + "/approve");
  await attempt("read_csrf", {{}}, "/dashboard/session");
  document.getElementById("out").textContent = JSON.stringify(results);
}})();
</script>"""


def test_a_page_on_another_origin_cannot_submit_or_approve_with_the_cookie(
    context: BrowserContext, daemon: DashboardDaemon, sim: Any
) -> None:
    use_scenario(sim, APPROVAL)
    task_id = daemon.submit("Keep me waiting", approval="required")
    daemon.wait_state(task_id, "awaiting_approval", timeout=FIRST_TASK_S)
    with daemon.http() as h:
        before = len(h.get("/v1/tasks", params={"limit": 500}).json()["tasks"])
    page = context.new_page()  # the signed-in browser: its cookie goes along
    sent_cookie: list[bool] = []
    page.on(
        "request",
        lambda r: (
            sent_cookie.append("cookie" in r.all_headers())
            if r.url.startswith(daemon.url) and r.method == "POST"
            else None
        ),
    )
    with foreign_site(ATTACK.format(daemon=daemon.url, task=task_id)) as url:
        page.goto(url)
        expect(page.locator("#out")).not_to_have_text("running", timeout=20_000)
        results = json.loads(page.locator("#out").inner_text())
        # A plain form post (no preflight, cookie attached): the guard refuses the Origin.
        with page.expect_navigation():
            page.locator("#form button").click()
        assert "is not allowed" in page.content()
    page.close()
    assert results["submit_json"] == "blocked"  # its preflight is refused
    assert results["approve_with_header"] == "blocked"
    assert results["read_csrf"] == "blocked"
    assert results["submit_simple"] == "opaque"  # sent, and refused: see the daemon below
    assert results["approve_rpc_simple"] == "opaque"
    assert any(sent_cookie), "the browser did not even send the cookie: the test proves nothing"
    assert daemon.task(task_id)["state"] == "awaiting_approval"
    with daemon.http() as h:
        tasks = h.get("/v1/tasks", params={"limit": 500}).json()["tasks"]
    assert len(tasks) == before
    assert not any(t["goal"] == "evil" for t in tasks)
    daemon.cancel_live_tasks()


# --- settings and the main views at both sizes ---------------------------------------------


def test_change_the_rules_from_the_settings_page(page: Page, daemon: DashboardDaemon) -> None:
    page.goto(daemon.url + "/#/settings")
    page.get_by_label("New instruction").fill("Cite every source")
    page.get_by_role("button", name="Add").nth(1).click()
    expect(page.get_by_role("button", name="Remove Cite every source")).to_be_visible()
    with daemon.http() as h:
        value = h.get("/v1/config", params={"key": "rules.instructions"}).json()["value"]
    assert value == ["Cite every source"]
    page.get_by_role("button", name="Remove Cite every source").click()
    expect(page.get_by_role("button", name="Remove Cite every source")).to_have_count(0)
    with daemon.http() as h:
        assert h.get("/v1/config", params={"key": "rules.instructions"}).json()["value"] == []
    expect(page.get_by_role("img", name=re.compile("Agent limit against memory"))).to_be_visible(
        timeout=10_000
    )
    # Each role's model with its price from litellm's table (the simulator serves gpt-5*),
    # filled in live once the daemon's engine has loaded.
    expect(page.get_by_label("The planner")).to_contain_text(
        re.compile(r"\$\d+\.\d+ in, \$\d+\.\d+ out per million tokens"), timeout=60_000
    )
    _shoot(page, "settings")


def test_the_main_views_at_both_sizes(page: Page, daemon: DashboardDaemon, sim: Any) -> None:
    use_scenario(sim, {**QUESTIONS, "merge_output": MERGED})
    asking = daemon.submit("Price the offer for the northern region")
    daemon.wait_state(asking, "input_required", timeout=FIRST_TASK_S)
    use_scenario(sim, APPROVAL)
    approving = daemon.submit("Write the launch announcement", approval="required")
    daemon.wait_state(approving, "awaiting_approval", timeout=STEP_S)
    page.goto(daemon.url + "/#/inbox")
    expect(_card(page, asking)).to_be_visible()
    expect(_card(page, approving).locator(".revision-note")).to_have_text(
        "Rejecting asks for revision 1 of at most 2."
    )
    expect(page.locator("#waiting-count")).to_have_text("2", timeout=10_000)
    page.screenshot(path=str(ARTIFACTS / "readme-inbox-1280x800.png"))  # the README's picture
    _shoot(page, "inbox")
    # Keyboard: the first Tab stop shows where focus is.
    page.keyboard.press("Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"
    page.goto(daemon.url + "/#/tasks")
    page.get_by_label("Only tasks that need me").check()
    expect(page.locator("table.tasks tbody tr")).to_have_count(2)
    _shoot(page, "tasks")
    page.goto(daemon.url + "/#/new")
    expect(page.get_by_label("Goal")).to_be_visible()
    _shoot(page, "new-task")
    daemon.cancel_live_tasks()
