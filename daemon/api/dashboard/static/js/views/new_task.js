// Submit a task: goal, context and the options a task may override (parallelize rule,
// approval, most streams). The submit carries an idempotency key tied to what the form
// holds, so pressing twice, or again after a lost answer, makes one task.

import { ApiError, api, newKey } from "../api.js";
import { h } from "../dom.js";

function field(id, label, control, hint) {
  const hintId = hint ? `${id}-hint` : undefined;
  if (hintId) control.setAttribute("aria-describedby", hintId);
  return h("div", { class: "field" },
    h("label", { for: id }, label), control, hint ? h("p", { class: "hint", id: hintId }, hint) : null);
}

function select(id, options) {
  return h("select", { id, name: id }, options.map(([value, label]) => h("option", { value }, label)));
}

export function mount(main) {
  const goal = h("textarea", { id: "goal", name: "goal", rows: 3, required: true });
  const context = h("textarea", { id: "context", name: "context", rows: 6 });
  const parallelize = select("parallelize", [["", "The global rule"], ["when-possible", "When possible"], ["always", "Always (widest split)"], ["never", "Never (strictly sequential)"]]);
  const approval = select("approval", [["", "The global setting"], ["required", "Required: I review the result"], ["none", "None: the merged result completes the task"]]);
  const maxStreams = h("input", { id: "max-streams", name: "max-streams", type: "number", min: "1", max: "200", inputmode: "numeric" });
  const problem = h("p", { class: "error", role: "alert" });
  const submit = h("button", { type: "submit", class: "primary" }, "Submit task");
  const form = h("form", { class: "new-task" },
    field("goal", "Goal", goal, "What the task should achieve."),
    field("context", "Context", context, "Background the planner should know (optional)."),
    h("fieldset", {}, h("legend", {}, "Options"),
      field("parallelize", "Parallelize", parallelize),
      field("approval", "Approval", approval),
      field("max-streams", "Most streams", maxStreams, "Leave empty for plan.max_streams.")),
    submit, problem);
  main.append(h("h1", { tabindex: "-1" }, "New task"), form);

  api.get("/v1/config").then((doc) => {
    parallelize.options[0].textContent = `The global rule (${doc.config.rules.parallelize})`;
    approval.options[0].textContent = `The global setting (${doc.config.review.approval})`;
  }).catch(() => {});

  let key = newKey();
  form.addEventListener("input", () => {
    key = newKey(); // other content, another task: a new key
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    problem.textContent = "";
    const options = {};
    if (parallelize.value) options.parallelize = parallelize.value;
    if (approval.value) options.approval = approval.value;
    if (maxStreams.value) options.max_streams = Number(maxStreams.value);
    submit.disabled = true;
    try {
      const answer = await api.post("/v1/tasks", { goal: goal.value, context: context.value, options }, { "idempotency-key": key });
      location.hash = `#/tasks/${encodeURIComponent(answer.task_id)}`;
    } catch (err) {
      problem.textContent = err instanceof ApiError ? err.message : String(err);
      const fields = Array.isArray(err.data) ? err.data.map((d) => d.field) : [err.data?.field];
      for (const name of fields) {
        const el = { goal, context, "options.parallelize": parallelize, "options.approval": approval, "options.max_streams": maxStreams }[name];
        if (el) el.setAttribute("aria-invalid", "true");
      }
    } finally {
      submit.disabled = false;
    }
  });
  return () => {};
}
