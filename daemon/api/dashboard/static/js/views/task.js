// One task, live: its state, what it needs from the human, the stream tree (state, model,
// tokens, cost, time, verdict; each stream's output and verdict history), the timeline of
// when each stream ran against the critical path, the result and the report.
//
// The page follows the task's event stream: model calls add up tokens and cost at once, and
// any other event makes the page fetch the task again (debounced), so what it shows is the
// daemon's own view a moment after each change, without a reload.

import { approvalPanel, cancelButton, questionsForm } from "../actions.js";
import { ApiError, api, taskPath } from "../api.js";
import { costChart, timelineChart } from "../charts.js";
import { codePanel, testBadge } from "./code.js";
import { clear, h, rerender, uid } from "../dom.js";
import { LIVE_STATES, age, duration, percent, stateLabel, tokens, usd } from "../format.js";
import { EventFollower, TaskTotals } from "../live.js";
import { renderMarkdown } from "../markdown.js";
import { poller } from "../poll.js";

const SAFETY_POLL_MS = 15000;
const REFETCH_DEBOUNCE_MS = 150;
const TREE_THROTTLE_MS = 250;
const RENDER_THROTTLE_MS = 100;

function metric(label, value) {
  return h("div", { class: "metric" }, h("dt", {}, label), h("dd", {}, value));
}

function section(title, ...content) {
  const id = uid("section");
  return h("section", { "aria-labelledby": id }, h("h2", { id }, title), content);
}

function elapsed(stream) {
  if (!stream.started_at) return "—";
  if (stream.ended_at) return duration(stream.ended_at - stream.started_at);
  return h("span", { class: "elapsed", "data-start": String(stream.started_at) },
    duration(Date.now() / 1000 - stream.started_at));
}

function reportSection(report) {
  const time = report.time || {};
  const cost = report.cost || {};
  const usage = report.usage || {};
  return section("Report",
    h("dl", { class: "figures" },
      metric("Wall clock", duration(time.wall_clock_s)),
      metric("Streams ran", duration(time.execution_s)),
      metric("One after another", duration(time.sequential_s)),
      metric("Critical path", duration(time.critical_path_s)),
      metric("Tokens", tokens(usage.total?.tokens)),
      metric("Cost", usd(cost.total_usd)),
      metric("Premium model only", usd(cost.premium_only_usd)),
      metric("Tiering saved", usd(cost.tiering_saved_usd)),
      metric("Cached prompt tokens", tokens(cost.cached_tokens)),
      metric("Caching saved", usd(cost.caching_saved_usd)),
      metric("Orchestration share", percent(usage.orchestration_share))),
    h("h3", {}, "Cost per role"),
    costChart(usage.per_role) || h("p", { class: "quiet" }, "No model calls."));
}

export function mount(main, ctx, params) {
  const taskId = params[0];
  const totals = new TaskTotals();
  let detail = null;
  let maxRevisions = null;
  let fetchedAfter = 0; // the last event applied when `detail` was asked for
  let attentionKey = null;
  let actionsKey = null;
  let panel = null;

  const title = h("h1", { tabindex: "-1" }, "Task");
  const meta = h("p", { class: "meta" });
  const live = h("span", { class: "live", role: "status" }, "connecting…");
  const actions = h("div", { class: "actions" });
  const problem = h("div");
  const attention = h("div", { class: "attention" });
  const tree = h("div", { class: "tree" });
  const timeline = h("div", { class: "timeline" });
  const result = h("div");
  const report = h("div");
  const context = h("div");
  const answered = h("div");
  const code = h("div");
  let codeView = null;
  main.append(
    title, meta, actions, problem, attention, code, answered,
    section("Streams", live, tree),
    section("Timeline", timeline),
    result, report, context,
  );

  const refresh = () => poll.refresh();
  const stateOf = (stream) => {
    const seen = totals.streams.get(stream.id);
    return seen && seen.stateId > fetchedAfter && seen.state ? seen.state : stream.state;
  };
  const taskState = () =>
    totals.lastStateId > fetchedAfter && totals.lastState ? totals.lastState : detail.state;

  function streamNode(stream, children) {
    const seen = totals.streams.get(stream.id) || { model: null, tokens: 0, cost: 0, calls: 0, verdicts: [] };
    const state = stateOf(stream);
    const titleId = uid("stream");
    const kids = children.get(stream.id) || [];
    return h("li", { class: `stream state-${state}`, "data-stream": stream.id },
      h("article", { "aria-labelledby": titleId },
        h("header", {},
          h("h3", { id: titleId }, stream.title || stream.id),
          h("code", {}, stream.id),
          h("span", { class: `badge state-${state}`, "data-field": "state" }, stateLabel(state))),
        h("dl", { class: "metrics" },
          metric("Model", seen.model || "—"),
          metric("Tokens", tokens(seen.tokens)),
          metric("Cost", usd(seen.cost)),
          metric("Time", elapsed(stream)),
          metric("Verdict", stream.verdict ? `${stream.verdict}${stream.reason ? ` — ${stream.reason}` : ""}` : "—"),
          stream.code ? metric("Tests", testBadge(stream.code.test_run, "tests")) : null,
          stream.depends_on.length ? metric("After", stream.depends_on.join(", ")) : null),
        stream.output
          ? h("details", { "data-key": `out-${stream.id}` },
              h("summary", { "data-key": `out-summary-${stream.id}` }, "Output"),
              h("div", { class: "markdown" }, renderMarkdown(stream.output)))
          : null,
        seen.verdicts.length
          ? h("details", { "data-key": `verdicts-${stream.id}` },
              h("summary", { "data-key": `verdicts-summary-${stream.id}` }, `Verdict history (${seen.verdicts.length})`),
              h("ol", { class: "verdicts" }, seen.verdicts.map((v) =>
                h("li", {}, h("strong", {}, v.verdict), ` in round ${v.round + 1}`, v.reason ? ` — ${v.reason}` : ""))))
          : null),
      kids.length ? h("ul", {}, kids.map((k) => streamNode(k, children))) : null);
  }

  function renderTree() {
    if (!detail) return;
    const children = new Map();
    const ids = new Set(detail.streams.map((s) => s.id));
    for (const stream of detail.streams) {
      // A sub-stream whose parent is not listed is shown at the top rather than lost.
      const parent = stream.parent && ids.has(stream.parent) ? stream.parent : "";
      if (!children.has(parent)) children.set(parent, []);
      children.get(parent).push(stream);
    }
    const o = totals.orchestration;
    rerender(tree, () => [
      detail.streams.length
        ? h("ul", { class: "streams" }, (children.get("") || []).map((s) => streamNode(s, children)))
        : h("p", { class: "quiet" }, detail.state === "queued" || detail.state === "planning" ? "Planning…" : "No streams."),
      h("p", { class: "quiet orchestration" },
        `Orchestration (plan, conflict review, merge): ${o.calls} calls · ${tokens(o.tokens)} tokens · ${usd(o.cost)}`),
    ]);
    const chart = timelineChart(detail.streams);
    rerender(timeline, () => chart || h("p", { class: "quiet" }, "No stream has started yet."));
  }

  const timers = new Set();
  /** `fn` at most once per `ms`: a burst of events (a replay) costs one render. */
  function throttled(fn, ms) {
    let timer = null;
    return () => {
      if (timer !== null) return;
      timer = setTimeout(() => {
        timers.delete(timer);
        timer = null;
        if (detail) fn();
      }, ms);
      timers.add(timer);
    };
  }
  const treeSoon = throttled(() => renderTree(), TREE_THROTTLE_MS);
  const renderSoon = throttled(() => render(), RENDER_THROTTLE_MS);

  function renderAttention(state) {
    const open = detail.questions.filter((q) => q.answer === null);
    const key = `${state}:${open.map((q) => q.id).join(",")}:${detail.updated_at}`;
    if (key === attentionKey) return;
    attentionKey = key;
    clear(attention);
    panel = null;
    if (open.length) attention.append(section("Questions", questionsForm(detail, refresh)));
    if (state === "awaiting_approval") {
      panel = approvalPanel(detail, maxRevisions, refresh);
      if (totals.revision !== null) panel.setRevision(totals.revision);
      attention.append(panel);
    }
  }

  function render() {
    const state = taskState();
    const firstLine = String(detail.goal).split("\n")[0];
    title.textContent = firstLine.length > 200 ? `${firstLine.slice(0, 199)}…` : firstLine;
    document.title = `${firstLine.slice(0, 60)} · tierd`;
    rerender(meta, () => [
      h("span", { class: `badge state-${state}`, "data-field": "task-state" }, stateLabel(state)),
      ` · started ${age(detail.created_at)} ago · task `, h("code", {}, detail.id),
    ]);
    const actionsNow = LIVE_STATES.has(state) ? "live" : "ended";
    if (actionsNow !== actionsKey) {
      actionsKey = actionsNow;
      clear(actions);
      if (actionsNow === "live") actions.append(cancelButton(detail, refresh));
    }
    rerender(problem, () =>
      state === "failed" ? h("p", { class: "callout error-text" }, `Failed: ${detail.error || "no reason recorded"}`) : []);
    renderAttention(state);
    if (detail.code) {
      if (!codeView) {
        codeView = codePanel(detail.id);
        code.append(codeView);
      }
      codeView.update(detail);
    }
    renderTree();
    rerender(result, () =>
      detail.result && state !== "awaiting_approval"
        ? section("Result", h("div", { class: "markdown result" }, renderMarkdown(detail.result)))
        : []);
    rerender(report, () => (detail.report ? reportSection(detail.report) : []));
    rerender(answered, () => {
      const done = detail.questions.filter((q) => q.answer !== null);
      return done.length
        ? section("Answered questions", h("dl", { class: "answers" }, done.map((q) =>
            h("div", {}, h("dt", {}, q.stream_id ? `${q.stream_id}: ${q.question}` : q.question), h("dd", {}, q.answer)))))
        : [];
    });
    rerender(context, () => {
      const full = String(detail.goal).includes("\n") ? [h("h3", {}, "Goal"), h("pre", { class: "wrap" }, detail.goal)] : [];
      return detail.context || full.length
        ? h("details", { "data-key": "context" }, h("summary", { "data-key": "context-summary" }, "Goal and context"),
            full, detail.context ? [h("h3", {}, "Context"), h("pre", { class: "wrap" }, detail.context)] : [])
        : [];
    });
  }

  async function load() {
    try {
      const mark = follower.lastId;
      const [task, limit] = await Promise.all([
        api.get(taskPath(taskId)),
        maxRevisions === null ? api.get("/v1/config?key=review.max_revisions") : null,
      ]);
      if (poll.stopped) return;
      if (limit) maxRevisions = limit.value;
      detail = task;
      fetchedAfter = mark;
      render();
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        title.textContent = "No such task";
        meta.textContent = `The daemon knows no task ${taskId}.`;
        follower.close();
        poll.stop();
      } else {
        meta.textContent = `Could not load the task: ${err.message}`;
      }
    }
  }

  let refetchTimer = null;
  const follower = new EventFollower(
    taskId,
    (event) => {
      totals.apply(event);
      if (event.type === "model.call") {
        treeSoon();
        return;
      }
      if (event.type === "attention" && panel && totals.revision !== null) panel.setRevision(totals.revision);
      renderSoon();
      clearTimeout(refetchTimer);
      refetchTimer = setTimeout(refresh, REFETCH_DEBOUNCE_MS);
    },
    (status) => {
      live.textContent = { live: "Live", ended: "Ended" }[status] || "Reconnecting…";
      live.dataset.status = status;
    },
  );
  const poll = poller(load, SAFETY_POLL_MS);
  // Charts are drawn for the width they get: draw them again when it changes.
  const onResize = () => renderSoon();
  window.addEventListener("resize", onResize);
  refresh();
  const ticker = setInterval(() => {
    for (const span of main.querySelectorAll(".elapsed")) {
      span.textContent = duration(Date.now() / 1000 - Number(span.dataset.start));
    }
    if (detail && detail.streams.some((s) => s.started_at && !s.ended_at)) {
      const chart = timelineChart(detail.streams);
      if (chart) rerender(timeline, () => chart);
    }
  }, 1000);
  return () => {
    window.removeEventListener("resize", onResize);
    follower.close();
    poll.stop();
    clearInterval(ticker);
    clearTimeout(refetchTimer);
    for (const timer of timers) clearTimeout(timer);
  };
}
