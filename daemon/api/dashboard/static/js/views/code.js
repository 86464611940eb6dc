// The code side of a task page (a task with a repository): where the work is (repository,
// base, the result's branch), the final test run tierd did on the merged result, how it was
// applied, each stream's verdict, test run and summary, and the merged diff.
//
// The diff is fetched when the task's merged result appears or changes (its head): the task
// page fetches the task again after each of its events, and hands it here.

import { api, taskPath } from "../api.js";
import { diffView } from "../diff.js";
import { h, rerender, uid } from "../dom.js";
import { duration, stateLabel } from "../format.js";
import { renderMarkdown } from "../markdown.js";

/** How long a diff that could not be loaded waits before it is asked for again. */
const RETRY_MS = 10000;
const short = (commit) => String(commit || "").slice(0, 12);

/** A test run as a badge: passed, failed (with its exit code), or not run. */
export function testBadge(run, field) {
  if (!run) return h("span", { class: "badge tests-none", "data-field": field }, "no test run");
  const ok = run.exit_code === 0;
  const how = ok ? "passed" : run.exit_code === null || run.exit_code === undefined ? "failed (timed out)" : `failed (exit ${run.exit_code})`;
  return h("span", { class: `badge tests-${ok ? "passed" : "failed"}`, "data-field": field }, how);
}

function testOutput(run, key, label) {
  if (!run || !run.output) return null;
  return h("details", { "data-key": key },
    h("summary", { "data-key": `${key}-summary` }, label),
    h("pre", { class: "test-output", tabindex: "0" }, run.output));
}

function finalTests(result) {
  const run = result.tests;
  return h("div", { class: "final-tests" },
    h("h3", {}, "Final test run ", testBadge(run, "final-tests")),
    run
      ? h("p", { class: "quiet" }, "tierd ran ", h("code", {}, run.command || "the test command"),
          " on the merged result in the sandbox", run.duration_s ? ` (${duration(run.duration_s)})` : "", ".")
      : h("p", { class: "quiet" }, "No test command is configured ([code] test_command): nothing was run."),
    testOutput(run, "final-tests-output", "Test output"));
}

function appliedLine(applied) {
  if (!applied) return null;
  let text;
  if (applied.how === "merge") {
    text = applied.already
      ? `Already in your branch ${applied.branch} (at ${short(applied.commit)}): nothing merged again.`
      : `Merged into your branch ${applied.branch} as commit ${applied.commit}.`;
  } else if (applied.how === "patch") {
    text = `Written as a patch: ${applied.path}`;
  } else {
    text = `Left on branch ${applied.branch} (${short(applied.head)}) for you to merge.`;
  }
  return h("p", { class: "applied", "data-field": "applied" }, h("strong", {}, "Applied: "), text);
}

function streamRows(streams) {
  const coded = streams.filter((s) => s.code);
  if (!coded.length) return h("p", { class: "quiet" }, "No stream has worked in the repository yet.");
  return h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Streams' reviews" },
    h("table", { class: "stream-reviews" },
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Stream"), h("th", { scope: "col" }, "Verdict"),
        h("th", { scope: "col" }, "Tests"), h("th", { scope: "col" }, "Change"), h("th", { scope: "col" }, "Summary"))),
      h("tbody", {}, coded.map((s) => {
        const c = s.code;
        return h("tr", { "data-stream": s.id },
          h("td", {}, h("code", {}, s.id), h("br"), h("span", { class: `badge state-${s.state}` }, stateLabel(s.state))),
          h("td", { "data-field": "verdict" }, s.verdict ? h("strong", {}, s.verdict) : "—",
            s.rounds > 1 ? h("span", { class: "quiet" }, ` after ${s.rounds} rounds`) : null,
            s.reason ? h("p", { class: "reason" }, s.reason) : null),
          h("td", {}, testBadge(c.test_run, "stream-tests"), testOutput(c.test_run, `tests-${s.id}`, "Output")),
          h("td", { class: "num" }, `${(c.files || []).length} file${(c.files || []).length === 1 ? "" : "s"} `,
            h("span", { class: "ins" }, `+${c.insertions ?? 0}`), " ", h("span", { class: "dels" }, `-${c.deletions ?? 0}`)),
          h("td", {}, s.output
            ? h("details", { "data-key": `summary-${s.id}` },
                h("summary", { "data-key": `summary-summary-${s.id}` }, String(s.output).split("\n")[0].slice(0, 120) || "Summary"),
                h("div", { class: "markdown" }, renderMarkdown(s.output)))
            : h("span", { class: "quiet" }, "—")));
      }))));
}

/**
 * The code panel of a task page; `panel.update(detail)` after each fetch of the task. The
 * diff part is replaced only when the result's head changes, so what the reader opened stays.
 */
export function codePanel(taskId) {
  const facts = h("div", { class: "code-facts" });
  const diff = h("div", { class: "code-diff", "aria-live": "polite" });
  const titleId = uid("section");
  const panel = h("section", { class: "code", "aria-labelledby": titleId },
    h("h2", { id: titleId }, "Code"), facts,
    h("h3", {}, "Merged diff"), diff);
  let shownHead = null;
  let asking = null;
  let failed = { head: null, at: 0 };

  async function loadDiff(head) {
    asking = head;
    try {
      const got = await api.get(`${taskPath(taskId)}/diff`);
      if (asking !== head) return;
      shownHead = head;
      rerender(diff, () => diffView(got));
    } catch (err) {
      if (asking !== head) return;
      failed = { head, at: Date.now() }; // tried again on an update after RETRY_MS
      rerender(diff, () => h("p", { class: "error-text" }, `Could not load the diff: ${err.message}`));
    } finally {
      if (asking === head) asking = null;
    }
  }

  panel.update = (detail) => {
    const code = detail.code;
    const result = code.result || null;
    rerender(facts, () => [
      h("dl", { class: "figures code-figures" },
        h("div", { class: "metric" }, h("dt", {}, "Repository"), h("dd", {}, h("code", {}, code.repo))),
        h("div", { class: "metric" }, h("dt", {}, "Base"), h("dd", {}, code.base, " ", h("code", {}, short(code.base_commit)),
          code.include_uncommitted ? " with your uncommitted changes" : "")),
        h("div", { class: "metric" }, h("dt", {}, "Result branch"),
          h("dd", { "data-field": "result-branch" }, result ? h("code", {}, result.branch) : "not merged yet"))),
      appliedLine(code.applied),
      result ? finalTests(result) : null,
      h("h3", {}, "Each stream's review"),
      streamRows(detail.streams),
    ]);
    if (!result) {
      if (shownHead === null && !diff.childElementCount) {
        diff.append(h("p", { class: "quiet" }, "The merged diff appears here once the accepted streams are merged."));
      }
      return;
    }
    const head = result.head;
    const wait = failed.head === head && Date.now() - failed.at < RETRY_MS;
    if (head !== shownHead && head !== asking && !wait) loadDiff(head);
  };
  return panel;
}
