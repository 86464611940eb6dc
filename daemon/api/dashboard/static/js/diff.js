// A code task's merged diff as the page shows it: the file list with +/- counts, and each
// file's patch in a collapsible block.
//
// Safe by construction: the patch is split into lines and every line goes in as text (a span
// per line, classed add / del / hunk / meta / ctx), never as markup. Cheap on large diffs: a
// file's lines are built only when its block is first opened, and at most LINE_CAP of them
// until the reader asks for all.

import { h } from "./dom.js";

/** Lines of one file shown before its "Show all" button. */
export const LINE_CAP = 800;
/** Lines opened at first, across the files in list order (smaller diffs open whole). */
const OPEN_BUDGET = 400;
const HEADER = "diff --git ";

/** C-quoted path text (git quotes a path with unusual bytes) back to the path. */
function unquote(text) {
  const bytes = [];
  const encoder = new TextEncoder();
  const simple = { n: 10, t: 9, r: 13, b: 8, f: 12, a: 7, v: 11, '"': 34, "\\": 92 };
  for (let i = 0; i < text.length; i += 1) {
    const ch = text[i];
    if (ch !== "\\") {
      bytes.push(...encoder.encode(ch));
      continue;
    }
    const next = text[i + 1];
    if (/[0-7]/.test(next || "")) {
      bytes.push(parseInt(text.slice(i + 1, i + 4), 8));
      i += 3;
    } else {
      bytes.push(simple[next] ?? next.charCodeAt(0));
      i += 1;
    }
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

/** The path a `diff --git a/P b/P` header names (no renames: both sides are the same). */
export function headerPath(line) {
  const rest = line.slice(HEADER.length);
  const quoted = /^"a\/((?:[^"\\]|\\.)*)"/.exec(rest);
  if (quoted) return unquote(quoted[1]);
  const n = (rest.length - 5) / 2; // "a/" + P + " b/" + P
  if (!Number.isInteger(n) || n < 1 || !rest.startsWith("a/")) return null;
  const path = rest.slice(2, 2 + n);
  return rest.slice(2 + n) === ` b/${path}` ? path : null;
}

/** The patch cut into one chunk per file: [{path, lines}], in the patch's order. */
export function splitPatch(patch) {
  const chunks = [];
  const lines = String(patch || "").split("\n");
  if (lines.length && lines[lines.length - 1] === "") lines.pop();
  for (const line of lines) {
    if (line.startsWith(HEADER)) chunks.push({ path: headerPath(line), lines: [line] });
    else if (chunks.length) chunks[chunks.length - 1].lines.push(line);
  }
  return chunks;
}

/** Each listed file with its chunk of the patch (null when the patch was cut before it). */
export function filesWithPatches(diff) {
  const chunks = splitPatch(diff.patch);
  const byPath = new Map(chunks.filter((c) => c.path !== null).map((c) => [c.path, c]));
  return diff.files.map((file, n) => {
    // A header the parser could not read: the n-th chunk (numstat and diff share git's order).
    const chunk = byPath.get(file.path) || (chunks[n] && chunks[n].path === null ? chunks[n] : null);
    return { ...file, lines: chunk ? chunk.lines : null };
  });
}

/** What kind of patch line this is, given whether a hunk has started. */
export function lineKind(line, inHunk) {
  if (line.startsWith("@@")) return "hunk";
  if (!inHunk) return "meta";
  if (line.startsWith("+")) return "add";
  if (line.startsWith("-")) return "del";
  if (line.startsWith("\\")) return "note";
  return "ctx";
}

function isBinary(lines) {
  return lines.some((l) => l === "GIT binary patch" || (l.startsWith("Binary files ") && l.endsWith(" differ")));
}

/** The rendered lines [from, to) of a file into `pre`, as classed spans of text. */
function appendLines(pre, lines, from, to) {
  let inHunk = lines.slice(0, from).some((l) => l.startsWith("@@"));
  const fragment = document.createDocumentFragment();
  for (let i = from; i < to; i += 1) {
    const kind = lineKind(lines[i], inHunk);
    if (kind === "hunk") inHunk = true;
    const span = document.createElement("span");
    span.className = `line ${kind}`;
    span.textContent = `${lines[i]}\n`;
    fragment.append(span);
  }
  pre.append(fragment);
}

function patchBody(file) {
  if (file.lines === null) {
    return h("p", { class: "quiet" }, "Not in the patch shown here (the patch was cut): ",
      h("code", {}, "tierd diff"), " shows it whole.");
  }
  if (isBinary(file.lines)) {
    const cut = file.lines.indexOf("GIT binary patch");
    const header = cut === -1 ? file.lines : file.lines.slice(0, cut);
    const pre = h("pre", { class: "patch" });
    appendLines(pre, header, 0, header.length);
    return [pre, h("p", { class: "quiet" }, "A binary file: its content is not shown.")];
  }
  const pre = h("pre", { class: "patch", tabindex: "0", "aria-label": `Changes to ${file.path}` });
  const shown = Math.min(file.lines.length, LINE_CAP);
  appendLines(pre, file.lines, 0, shown);
  if (shown === file.lines.length) return pre;
  const more = h("button", { type: "button", class: "small show-all" },
    `Show all ${file.lines.length.toLocaleString("en-US")} lines`);
  more.addEventListener("click", () => {
    appendLines(pre, file.lines, shown, file.lines.length);
    more.remove();
  });
  return [pre, more];
}

function counts(file) {
  if (file.insertions === null || file.deletions === null) return h("span", { class: "quiet" }, "binary");
  return [h("span", { class: "ins" }, `+${file.insertions}`), " ", h("span", { class: "dels" }, `-${file.deletions}`)];
}

/** The diff view: a summary line and one collapsible block per file, built when opened. */
export function diffView(diff) {
  const files = filesWithPatches(diff);
  const ins = diff.files.reduce((n, f) => n + (f.insertions || 0), 0);
  const dels = diff.files.reduce((n, f) => n + (f.deletions || 0), 0);
  let budget = OPEN_BUDGET;
  const blocks = files.map((file) => {
    const body = h("div", { class: "patch-body" });
    const block = h("details", { class: "diff-file", "data-path": file.path, "data-key": `diff-${file.path}` },
      h("summary", {}, h("code", { class: "path" }, file.path), " ", counts(file)),
      body);
    let built = false;
    const build = () => {
      if (built || !block.open) return;
      built = true;
      body.append(...[patchBody(file)].flat());
    };
    block.addEventListener("toggle", build);
    const size = file.lines ? file.lines.length : Infinity; // not in a cut patch: closed
    if (size <= budget) {
      budget -= size;
      block.open = true; // fires toggle: built then
    }
    return block;
  });
  return h("div", { class: "diff" },
    h("p", { class: "diff-summary" },
      `${diff.files.length} file${diff.files.length === 1 ? "" : "s"} changed, `,
      h("span", { class: "ins" }, `+${ins}`), " ", h("span", { class: "dels" }, `-${dels}`),
      ` on `, h("code", {}, diff.branch), ` (${String(diff.head).slice(0, 12)} against ${String(diff.base_commit).slice(0, 12)})`),
    diff.truncated
      ? h("p", { class: "callout" }, "The patch is too large to show whole: it was cut (the file list is whole). ",
          h("code", {}, `tierd diff ${diff.task_id}`), " shows all of it.")
      : null,
    h("ul", { class: "diff-files", "aria-label": "Changed files" }, blocks.map((b) => h("li", {}, b))));
}
