// The attention inbox: every task that waits for the human, oldest first, each with what it
// needs (its questions in one form, or its result to approve), and the recent failures.

import { approvalPanel, cancelButton, questionsForm } from "../actions.js";
import { api, rpcBatch } from "../api.js";
import { h, rerender, uid } from "../dom.js";
import { age, stateLabel } from "../format.js";
import { replayTotals } from "../live.js";
import { poller } from "../poll.js";

const POLL_MS = 2000;

function clipGoal(goal) {
  const line = String(goal).split("\n")[0];
  return line.length > 140 ? `${line.slice(0, 139)}…` : line;
}

function card(task, maxRevisions, refresh) {
  const titleId = uid("card-title");
  const body = task.state === "input_required"
    ? questionsForm(task, refresh)
    : approvalPanel(task, maxRevisions, refresh);
  if (task.state === "awaiting_approval") {
    replayTotals(task.id).then((totals) => {
      if (totals.revision !== null) body.setRevision(totals.revision);
    });
  }
  return h("article", { class: `card state-${task.state}`, "aria-labelledby": titleId, "data-task": task.id },
    h("header", {},
      h("h2", { id: titleId }, h("a", { href: `#/tasks/${encodeURIComponent(task.id)}`, "data-key": `link-${task.id}` }, clipGoal(task.goal))),
      h("p", { class: "meta" },
        h("span", { class: `badge state-${task.state}` }, stateLabel(task.state)),
        ` waiting ${age(task.updated_at)} · task `, h("code", {}, task.id))),
    body,
    h("footer", {}, cancelButton(task, refresh)));
}

function failureList(failed) {
  if (failed.length === 0) return h("p", { class: "quiet" }, "No failed tasks.");
  return h("ul", { class: "failures" }, failed.map((t) =>
    h("li", {},
      h("a", { href: `#/tasks/${encodeURIComponent(t.id)}`, "data-key": `fail-${t.id}` }, clipGoal(t.goal)),
      h("span", { class: "quiet" }, ` failed ${age(t.updated_at)} ago`),
      h("p", { class: "error-text" }, t.error || "no reason recorded"))));
}

export function mount(main, ctx) {
  const summary = h("p", { class: "summary", "aria-live": "polite" }, "Loading…");
  const cards = h("div", { class: "cards" });
  const failures = h("div");
  main.append(
    h("h1", { tabindex: "-1" }, "Needs you"),
    summary,
    cards,
    h("section", { "aria-labelledby": "failures-title" },
      h("h2", { id: "failures-title" }, "Recent failures"), failures),
  );
  const shown = new Map(); // task id -> {signature, element}
  let maxRevisions = null;
  const refresh = () => poll.refresh();

  async function load() {
    try {
      const [questions, approvals, failed, limit] = await Promise.all([
        api.get("/v1/tasks?state=input_required&limit=100"),
        api.get("/v1/tasks?state=awaiting_approval&limit=100"),
        api.get("/v1/tasks?state=failed&limit=10"),
        maxRevisions === null ? api.get("/v1/config?key=review.max_revisions") : null,
      ]);
      if (poll.stopped) return;
      if (limit) maxRevisions = limit.value;
      const waiting = [...questions.tasks, ...approvals.tasks].sort((a, b) => a.updated_at - b.updated_at);
      const signature = (t) => `${t.state}:${t.updated_at}`;
      const stale = waiting.filter((t) => shown.get(t.id)?.signature !== signature(t));
      const details = await rpcBatch(stale.map((t) => ["task/get", { task_id: t.id }]));
      if (poll.stopped) return;
      stale.forEach((t, n) => {
        if (details[n] instanceof Error) return;
        shown.get(t.id)?.element.remove();
        shown.set(t.id, { signature: signature(t), element: card(details[n], maxRevisions, refresh) });
      });
      const keep = new Set(waiting.map((t) => t.id));
      for (const [id, entry] of shown) {
        if (!keep.has(id)) {
          entry.element.remove();
          shown.delete(id);
        }
      }
      // In order, moving only what is out of place (a moved node would lose focus).
      waiting.forEach((t, n) => {
        const element = shown.get(t.id)?.element;
        if (element && cards.children[n] !== element) cards.insertBefore(element, cards.children[n] || null);
      });
      summary.textContent = waiting.length === 0
        ? "Nothing needs you right now."
        : `${waiting.length} task${waiting.length === 1 ? "" : "s"} need${waiting.length === 1 ? "s" : ""} you.`;
      ctx.setWaiting(waiting.length);
      rerender(failures, () => failureList(failed.tasks));
    } catch (err) {
      summary.textContent = `Could not load the inbox: ${err.message}`;
    }
  }

  const poll = poller(load, POLL_MS);
  refresh();
  return () => poll.stop();
}
