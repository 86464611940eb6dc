// Every task, newest first: state, age and cost, with a "needs me" filter.

import { api, rpcBatch } from "../api.js";
import { h, rerender } from "../dom.js";
import { ENDED, NEEDS_ME, age, stateLabel, usd } from "../format.js";
import { poller } from "../poll.js";

const POLL_MS = 3000;
const PAGE = 50;
/** Costs of ended tasks never change: asked once per page load. */
const endedCosts = new Map();

function costCell(task) {
  if (endedCosts.has(task.id)) return usd(endedCosts.get(task.id));
  return ENDED.has(task.state) ? "…" : h("span", { class: "quiet", title: "known when the task ends" }, "—");
}

function table(tasks) {
  if (tasks.length === 0) return h("p", { class: "quiet" }, "No tasks here.");
  return h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Tasks" },
    h("table", { class: "tasks" },
      h("caption", { class: "visually-hidden" }, "Tasks, newest first"),
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Task"), h("th", { scope: "col" }, "State"),
        h("th", { scope: "col" }, "Age"), h("th", { scope: "col", class: "num" }, "Cost"))),
      h("tbody", {}, tasks.map((t) =>
        h("tr", { "data-task": t.id, class: NEEDS_ME.has(t.state) ? "needs-me" : null },
          h("td", {}, h("a", { href: `#/tasks/${encodeURIComponent(t.id)}`, "data-key": `row-${t.id}` },
            String(t.goal).split("\n")[0])),
          h("td", {}, h("span", { class: `badge state-${t.state}` }, stateLabel(t.state))),
          h("td", {}, age(t.created_at)),
          h("td", { class: "num" }, costCell(t)))))));
}

async function loadCosts(tasks) {
  const missing = tasks.filter((t) => ENDED.has(t.state) && !endedCosts.has(t.id));
  const details = await rpcBatch(missing.map((t) => ["task/get", { task_id: t.id }]));
  missing.forEach((t, n) => {
    const cost = details[n]?.report?.cost?.total_usd;
    if (!(details[n] instanceof Error)) endedCosts.set(t.id, typeof cost === "number" ? cost : null);
  });
}

export function mount(main) {
  const needsMe = h("input", { type: "checkbox", id: "needs-me", "data-key": "needs-me" });
  const body = h("div", { "aria-live": "off" });
  const more = h("button", { type: "button", hidden: true }, "Show more");
  let limit = PAGE;
  main.append(
    h("h1", { tabindex: "-1" }, "Tasks"),
    h("p", { class: "controls" }, needsMe, h("label", { for: "needs-me" }, " Only tasks that need me")),
    body,
    more,
  );

  async function load() {
    try {
      let tasks;
      let hasMore = false;
      if (needsMe.checked) {
        const pages = await Promise.all(
          [...NEEDS_ME].map((state) => api.get(`/v1/tasks?state=${state}&limit=500`)));
        tasks = pages.flatMap((p) => p.tasks).sort((a, b) => b.created_at - a.created_at);
      } else {
        const page = await api.get(`/v1/tasks?limit=${limit}`);
        tasks = page.tasks;
        hasMore = Boolean(page.next_cursor) && limit < 500;
      }
      await loadCosts(tasks);
      if (poll.stopped) return;
      more.hidden = !hasMore;
      rerender(body, () => table(tasks));
    } catch (err) {
      rerender(body, () => h("p", { class: "error" }, `Could not load tasks: ${err.message}`));
    }
  }

  const poll = poller(load, POLL_MS);
  needsMe.addEventListener("change", () => poll.refresh());
  more.addEventListener("click", () => {
    limit = Math.min(500, limit + PAGE);
    poll.refresh();
  });
  poll.refresh();
  return () => poll.stop();
}
