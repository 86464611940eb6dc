// What a human does to a task, the same on the inbox and on the task page: answer its
// questions (all of them in one form), approve or reject its result, cancel it.

import { ApiError, api, taskPath } from "./api.js";
import { append, h, toast, uid } from "./dom.js";
import { renderMarkdown } from "./markdown.js";

function errorText(err) {
  if (err instanceof ApiError) return err.message;
  return `the daemon did not answer (${err.message || err})`;
}

/** Run `work` with `button` disabled; errors go to `box` (and a toast). */
async function busy(button, box, work) {
  button.disabled = true;
  box.textContent = "";
  try {
    await work();
  } catch (err) {
    box.textContent = errorText(err);
    toast(errorText(err), "error");
  } finally {
    button.disabled = false;
  }
}

const errorBox = () => h("p", { class: "error", role: "alert" });

/** One form for every open question of a task. */
export function questionsForm(task, onDone) {
  const open = (task.questions || []).filter((q) => q.answer === null);
  const box = errorBox();
  const fields = open.map((q) => {
    const id = uid("answer");
    return h("div", { class: "field" },
      h("label", { for: id },
        q.stream_id ? h("span", { class: "stream-ref" }, `${q.stream_id}: `) : null,
        q.question),
      h("textarea", { id, name: q.id, rows: 2, required: true, "data-key": `answer-${task.id}-${q.id}` }));
  });
  const submit = h("button", { type: "submit", class: "primary", "data-key": `send-${task.id}` },
    open.length > 1 ? `Send ${open.length} answers` : "Send answer");
  const form = h("form", { class: "questions", "aria-label": `Questions of task ${task.id}` },
    h("fieldset", {},
      h("legend", {}, open.length === 1 ? "1 question waits for you" : `${open.length} questions wait for you`),
      fields, submit),
    box);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const answers = {};
    for (const area of form.querySelectorAll("textarea")) answers[area.name] = area.value;
    busy(submit, box, async () => {
      await api.post(`${taskPath(task.id)}/answer`, { answers });
      toast("Answers sent: the task resumes.");
      onDone();
    });
  });
  return form;
}

/** What a rejection of result number `revision` leads to under review.max_revisions. */
export function revisionNote(revision, maxRevisions) {
  if (revision === null || revision === undefined || maxRevisions === null || maxRevisions === undefined) {
    return "Checking how many revisions are left…";
  }
  if (revision >= maxRevisions) {
    return `No revision left: rejecting fails the task (review.max_revisions = ${maxRevisions}).`;
  }
  if (revision === maxRevisions - 1) {
    return `Rejecting asks for the last revision allowed (review.max_revisions = ${maxRevisions}).`;
  }
  return `Rejecting asks for revision ${revision + 1} of at most ${maxRevisions}.`;
}

/** What the daemon did with an approved code task's result, for a person. */
export function appliedText(applied) {
  if (!applied) return "Approved: the task completes.";
  if (applied.how === "merge") {
    return applied.already
      ? `Approved: the change was already in your branch ${applied.branch} (${applied.commit}).`
      : `Approved and merged into your branch ${applied.branch}: commit ${applied.commit}.`;
  }
  if (applied.how === "patch") return `Approved: the patch is written to ${applied.path}`;
  return `Approved: the change stays on branch ${applied.branch} for you to merge.`;
}

const APPLY_CHOICES = [
  ["branch", "Leave it on its branch", (task) => `Nothing in your repository changes: the result stays on ${task.code?.result?.branch || "its branch"}, for you to merge or open a pull request from.`],
  ["merge", "Merge it into my current branch", () => "Only when that is clean: a file you changed and did not commit, or a conflict with your new commits, refuses it and changes nothing."],
  ["patch", "Write a patch file", () => "A patch under tierd's data folder; the page shows where."],
];

/** How an approved code task's result is applied: branch (default), merge or patch. */
function applyChoice(task) {
  const name = uid("apply");
  const radios = APPLY_CHOICES.map(([value, label, hint]) => {
    const id = `${name}-${value}`;
    const hintId = `${id}-hint`;
    return h("div", { class: "choice" },
      h("input", { type: "radio", id, name, value, checked: value === "branch", "aria-describedby": hintId, "data-key": `apply-${task.id}-${value}` }),
      h("label", { for: id }, label),
      h("p", { class: "hint", id: hintId }, hint(task)));
  });
  const fieldset = h("fieldset", { class: "apply" }, h("legend", {}, "On approval, apply the change"), radios);
  fieldset.value = () => fieldset.querySelector("input:checked")?.value || "branch";
  return fieldset;
}

/** A refusal to apply (409): what it says, and the files it names, kept on screen. */
function refusal(err) {
  const files = Array.isArray(err.data?.files) ? err.data.files : [];
  return h("div", { class: "refusal callout", role: "alert" },
    h("p", {}, h("strong", {}, "Not applied: your work is as it was, and the task still waits for you.")),
    h("p", { class: "error-text" }, err.message),
    files.length ? h("ul", { class: "refused-files", "aria-label": "Files in the way" }, files.map((f) => h("li", {}, h("code", {}, f)))) : null);
}

/**
 * The merged result as Markdown, with approve and reject-with-comment; a code task's also
 * with how to apply it. Returns the panel; `panel.setRevision(n)` fills in the revision once
 * the events have told it.
 */
export function approvalPanel(task, maxRevisions, onDone) {
  const box = errorBox();
  const answer = h("div", { class: "apply-answer", "aria-live": "polite" });
  const heading = h("h3", {}, "Result awaiting approval");
  const note = h("p", { class: "revision-note", "aria-live": "polite" }, revisionNote(null, maxRevisions));
  const choice = task.code ? applyChoice(task) : null;
  const approve = h("button", { type: "button", class: "primary", "data-key": `approve-${task.id}` }, "Approve");
  approve.addEventListener("click", async () => {
    approve.disabled = true;
    box.textContent = "";
    answer.replaceChildren();
    try {
      const body = { decision: "approve" };
      if (choice) body.apply = choice.value();
      const decided = await api.post(`${taskPath(task.id)}/approve`, body);
      const said = appliedText(decided?.applied);
      answer.append(h("p", { class: "applied-answer", role: "status" }, said));
      toast(said);
      onDone();
    } catch (err) {
      if (err instanceof ApiError && err.status === 409 && choice) answer.append(refusal(err));
      else box.textContent = errorText(err);
      toast(errorText(err), "error");
    } finally {
      approve.disabled = false;
    }
  });
  const commentId = uid("comment");
  const comment = h("textarea", { id: commentId, rows: 3, required: true, "data-key": `comment-${task.id}` });
  const reject = h("button", { type: "submit", "data-key": `reject-${task.id}` }, "Reject with comment");
  const rejectForm = h("form", { class: "reject" },
    h("label", { for: commentId }, "What should change"), comment, reject);
  rejectForm.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(reject, box, async () => {
      await api.post(`${taskPath(task.id)}/approve`, { decision: "reject", comment: comment.value });
      toast("Sent back with your comment: a revision is on its way.");
      onDone();
    });
  });
  const result = h("div", { class: "markdown result", tabindex: "0", role: "region", "aria-label": "Result" },
    renderMarkdown(task.result || ""));
  const link = task.code && !location.hash.startsWith("#/tasks/")
    ? h("p", {}, h("a", { href: `#/tasks/${encodeURIComponent(task.id)}` }, "Review the diff and the test runs"))
    : null;
  const panel = h("section", { class: "approval" },
    heading, result, link, note, choice, h("div", { class: "actions" }, approve), answer, rejectForm, box);
  panel.setRevision = (revision) => {
    // Revision 0 is the first result; the daemon numbers each rejection's answer from 1.
    heading.textContent = revision ? `Result awaiting approval — revision ${revision}` : "Result awaiting approval";
    note.textContent = revisionNote(revision, maxRevisions);
    panel.dataset.revision = String(revision);
  };
  return panel;
}

/** Cancel, with a second press to confirm (no dialog: it stays keyboard-friendly). */
export function cancelButton(task, onDone) {
  const box = errorBox();
  const button = h("button", { type: "button", class: "danger", "data-key": `cancel-${task.id}` }, "Cancel task");
  let armed = null;
  button.addEventListener("click", () => {
    if (armed === null) {
      button.textContent = "Press again to cancel";
      armed = setTimeout(() => {
        armed = null;
        button.textContent = "Cancel task";
      }, 5000);
      return;
    }
    clearTimeout(armed);
    armed = null;
    button.textContent = "Cancel task";
    busy(button, box, async () => {
      await api.post(`${taskPath(task.id)}/cancel`);
      toast("Canceled.");
      onDone();
    });
  });
  return append(h("div", { class: "cancel" }), button, box);
}
