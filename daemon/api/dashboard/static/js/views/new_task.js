// Submit a task: goal, context, the options a task may override (parallelize rule, approval,
// most streams), a repository for a code task (its base, and whether the uncommitted changes
// count), and attachments (files sent as base64 with their media type). The submit carries an
// idempotency key tied to what the form holds, so pressing twice, or again after a lost
// answer, makes one task.

import { ApiError, api, newKey } from "../api.js";
import { h } from "../dom.js";
import { bytes } from "../format.js";

function field(id, label, control, hint) {
  const hintId = hint ? `${id}-hint` : undefined;
  if (hintId) control.setAttribute("aria-describedby", hintId);
  return h("div", { class: "field" },
    h("label", { for: id }, label), control, hint ? h("p", { class: "hint", id: hintId }, hint) : null);
}

function select(id, options) {
  return h("select", { id, name: id }, options.map(([value, label]) => h("option", { value }, label)));
}

/** A file's content as base64 (the browser encodes it: no string building here). */
export function base64Of(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => {
      const url = String(reader.result);
      resolve(url.slice(url.indexOf(",") + 1)); // data:<type>;base64,<content>
    };
    reader.onerror = () => reject(reader.error || new Error(`could not read ${file.name}`));
    reader.readAsDataURL(file);
  });
}

/** The attachments of the submit body: [{name, media_type, data}]. */
export async function attachmentsOf(files) {
  return Promise.all([...files].map(async (file) => ({
    name: file.name,
    media_type: file.type || "application/octet-stream",
    data: await base64Of(file),
  })));
}

function codeFields() {
  const repo = h("input", { id: "repo", name: "repo", type: "text", autocomplete: "off", spellcheck: "false", placeholder: "/home/me/project" });
  const base = h("input", { id: "base", name: "base", type: "text", autocomplete: "off", spellcheck: "false", placeholder: "HEAD" });
  const uncommitted = h("input", { id: "include-uncommitted", name: "include-uncommitted", type: "checkbox" });
  const set = h("fieldset", { class: "code-fields" }, h("legend", {}, "Code task (optional)"),
    field("repo", "Repository", repo,
      "The absolute path of a git repository on the daemon's machine. The agents work in worktrees of their own; yours is never touched. Leave empty for a text task."),
    field("base", "Base", base, "The branch, tag or commit to start from (default HEAD)."),
    h("div", { class: "field check" }, uncommitted,
      h("label", { for: "include-uncommitted" }, "Start from my uncommitted changes too"),
      h("p", { class: "hint" }, "Base must then be HEAD.")));
  return { set, repo, base, uncommitted };
}

function attachmentFields() {
  const input = h("input", { id: "attachments", name: "attachments", type: "file", multiple: true });
  const list = h("ul", { class: "attachment-list", "aria-label": "Chosen files" });
  const problem = h("p", { class: "error", role: "alert", "data-field": "attachments-error" });
  input.addEventListener("change", () => {
    problem.textContent = "";
    input.removeAttribute("aria-invalid");
    list.replaceChildren(...[...input.files].map((f) =>
      h("li", {}, h("code", {}, f.name), h("span", { class: "quiet" }, ` ${f.type || "unknown type"}, ${bytes(f.size)}`))));
  });
  const set = h("div", { class: "attachments" },
    field("attachments", "Attachments", input, "Images, PDFs, spreadsheets the task needs (optional)."),
    list, problem);
  return { set, input, problem };
}

export function mount(main) {
  const goal = h("textarea", { id: "goal", name: "goal", rows: 3, required: true });
  const context = h("textarea", { id: "context", name: "context", rows: 6 });
  const parallelize = select("parallelize", [["", "The global rule"], ["when-possible", "When possible"], ["always", "Always (widest split)"], ["never", "Never (strictly sequential)"]]);
  const approval = select("approval", [["", "The global setting"], ["required", "Required: I review the result"], ["none", "None: the merged result completes the task"]]);
  const maxStreams = h("input", { id: "max-streams", name: "max-streams", type: "number", min: "1", max: "200", inputmode: "numeric" });
  const code = codeFields();
  const files = attachmentFields();
  const problem = h("p", { class: "error", role: "alert" });
  const submit = h("button", { type: "submit", class: "primary" }, "Submit task");
  const form = h("form", { class: "new-task" },
    field("goal", "Goal", goal, "What the task should achieve."),
    field("context", "Context", context, "Background the planner should know (optional)."),
    files.set,
    code.set,
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

  const controls = {
    goal, context, repo: code.repo, base: code.base, include_uncommitted: code.uncommitted,
    "options.parallelize": parallelize, "options.approval": approval, "options.max_streams": maxStreams,
  };
  let key = newKey();
  const another = () => {
    key = newKey(); // other content, another task: a new key
  };
  form.addEventListener("input", another);
  form.addEventListener("change", another);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    problem.textContent = "";
    files.problem.textContent = "";
    const body = { goal: goal.value, context: context.value, options: {} };
    if (parallelize.value) body.options.parallelize = parallelize.value;
    if (approval.value) body.options.approval = approval.value;
    if (maxStreams.value) body.options.max_streams = Number(maxStreams.value);
    if (code.repo.value.trim()) body.repo = code.repo.value.trim();
    if (code.base.value.trim()) body.base = code.base.value.trim();
    if (code.uncommitted.checked) body.include_uncommitted = true;
    submit.disabled = true;
    try {
      // Only a submit with files carries the field: a text task stays what it always was.
      if (files.input.files.length) body.attachments = await attachmentsOf(files.input.files);
      const answer = await api.post("/v1/tasks", body, { "idempotency-key": key });
      location.hash = `#/tasks/${encodeURIComponent(answer.task_id)}`;
    } catch (err) {
      const message = err instanceof ApiError ? err.message : String(err.message || err);
      const fields = (Array.isArray(err.data) ? err.data.map((d) => d?.field) : [err.data?.field])
        .filter((name) => typeof name === "string");
      const aboutFiles = fields.some((name) => name.startsWith("attachments"))
        || (err.status === 413 && "attachments" in body);
      // An attachment's refusal is shown beside the files; anything else under the form.
      (aboutFiles ? files.problem : problem).textContent = message;
      if (aboutFiles) files.input.setAttribute("aria-invalid", "true");
      for (const name of fields) controls[name]?.setAttribute("aria-invalid", "true");
    } finally {
      submit.disabled = false;
    }
  });
  return () => {};
}
