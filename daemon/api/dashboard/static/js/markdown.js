// A small, safe Markdown renderer: text in, DOM nodes out.
//
// Safe by construction: it never parses HTML. Every piece of text becomes a text node, raw
// HTML in the input stays visible as text, and a link is made only for an absolute http: or
// https: URL (javascript:, data:, relative and every other kind stay plain text). It knows
// headings, paragraphs, emphasis, strong, strike-through, inline code, fenced code, block
// quotes, lists (nested by indentation), tables and rules: what model output uses.

import { h } from "./dom.js";

const MAX_DEPTH = 8;
const FENCE = /^ {0,3}(`{3,}|~{3,})(.*)$/;
const HEADING = /^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$/;
const RULE = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
const QUOTE = /^ {0,3}> ?(.*)$/;
const ITEM = /^( {0,3})([-*+]|\d{1,9}[.)])[ \t]+(.*)$/;
const TABLE_RULE = /^ {0,3}\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$/;
const INLINE = new RegExp(
  [
    "(?<tick>`+)(?<code>[\\s\\S]*?[^`])\\k<tick>(?!`)",
    "\\[(?<label>(?:[^\\[\\]]|\\[[^\\[\\]]*\\])*)\\]\\((?<href>[^()\\s]*(?:\\([^()\\s]*\\)[^()\\s]*)*)(?:\\s+\"[^\"]*\")?\\)",
    "<(?<auto>https?:\\/\\/[^\\s<>]+)>",
    "\\*\\*(?<strong>[^\\s*](?:[\\s\\S]*?[^\\s])?)\\*\\*",
    "(?<!\\w)__(?<strong2>[^\\s_](?:[\\s\\S]*?[^\\s])?)__(?!\\w)",
    "~~(?<del>[^\\s~](?:[\\s\\S]*?[^\\s~])?)~~",
    "\\*(?<em>[^\\s*](?:[\\s\\S]*?[^\\s*])?)\\*",
    "(?<!\\w)_(?<em2>[^\\s_](?:[\\s\\S]*?[^\\s_])?)_(?!\\w)",
    "(?<br> {2,}\\n|\\\\\\n)",
  ].join("|"),
  "g",
);

/** The URL as the link's href if it is absolute http(s), else null. */
export function safeUrl(raw) {
  let url;
  try {
    url = new URL(String(raw).trim());
  } catch {
    return null;
  }
  return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
}

/** Render Markdown `text` into a DocumentFragment. Headings start at h{1 + headingShift}. */
export function renderMarkdown(text, { headingShift = 2 } = {}) {
  const fragment = document.createDocumentFragment();
  const lines = String(text ?? "").replace(/\r\n?/g, "\n").split("\n");
  blocks(fragment, lines, 0, headingShift);
  return fragment;
}

function startsBlock(lines, i) {
  const line = lines[i];
  return (
    FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) ||
    ITEM.test(line) || startsTable(lines, i)
  );
}

function startsTable(lines, i) {
  return (
    i + 1 < lines.length && lines[i].includes("|") && lines[i + 1].includes("|") &&
    lines[i + 1].includes("-") && TABLE_RULE.test(lines[i + 1])
  );
}

function blocks(parent, lines, depth, shift) {
  if (depth > MAX_DEPTH) {
    parent.append(h("p", {}, lines.join("\n")));
    return;
  }
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    let m;
    if (!line.trim()) {
      i += 1;
    } else if ((m = FENCE.exec(line))) {
      i = fencedCode(parent, lines, i, m);
    } else if ((m = HEADING.exec(line))) {
      const level = Math.min(6, m[1].length + shift);
      parent.append(inline(h(`h${level}`), m[2], depth));
      i += 1;
    } else if (RULE.test(line)) {
      parent.append(h("hr"));
      i += 1;
    } else if (QUOTE.test(line)) {
      const inner = [];
      while (i < lines.length && (m = QUOTE.exec(lines[i]))) {
        inner.push(m[1]);
        i += 1;
      }
      const quote = h("blockquote");
      blocks(quote, inner, depth + 1, shift);
      parent.append(quote);
    } else if (ITEM.test(line)) {
      i = list(parent, lines, i, depth, shift);
    } else if (startsTable(lines, i)) {
      i = table(parent, lines, i, depth);
    } else {
      const paragraph = [line.trim()];
      i += 1;
      while (i < lines.length && lines[i].trim() && !startsBlock(lines, i)) {
        paragraph.push(lines[i].trim());
        i += 1;
      }
      parent.append(inline(h("p"), paragraph.join("\n"), depth));
    }
  }
}

function fencedCode(parent, lines, i, open) {
  const fence = open[1];
  const body = [];
  let j = i + 1;
  while (j < lines.length && !lines[j].trim().startsWith(fence)) {
    body.push(lines[j]);
    j += 1;
  }
  const code = h("code", {}, body.join("\n"));
  const lang = open[2].trim().split(/\s+/)[0];
  if (lang) code.dataset.lang = lang;
  parent.append(h("pre", {}, code));
  return j + 1;
}

function dedent(line) {
  const spaces = line.match(/^ */)[0].length;
  return line.slice(Math.min(spaces, 4));
}

function list(parent, lines, i, depth, shift) {
  const first = ITEM.exec(lines[i]);
  const indent = first[1].length;
  const ordered = /\d/.test(first[2]);
  const el = h(ordered ? "ol" : "ul");
  const start = parseInt(first[2], 10);
  if (ordered && start !== 1) el.setAttribute("start", String(start));
  const items = [];
  while (i < lines.length) {
    const line = lines[i];
    const m = ITEM.exec(line);
    if (m && m[1].length <= indent + 1) {
      if (/\d/.test(m[2]) !== ordered) break; // another kind of list starts
      items.push([m[3]]);
    } else if (!line.trim()) {
      const next = lines[i + 1];
      if (next === undefined || !(/^ {2,}\S/.test(next) || ITEM.test(next))) break;
      items[items.length - 1].push("");
    } else if (/^ {2,}/.test(line)) {
      items[items.length - 1].push(dedent(line));
    } else if (!startsBlock(lines, i)) {
      items[items.length - 1].push(line.trim()); // a lazy continuation of the item's text
    } else {
      break;
    }
    i += 1;
  }
  for (const itemLines of items) {
    const li = h("li");
    let k = 0;
    const text = [];
    while (k < itemLines.length && itemLines[k].trim() && (k === 0 || !startsBlock(itemLines, k))) {
      text.push(itemLines[k].trim());
      k += 1;
    }
    inline(li, text.join("\n"), depth);
    blocks(li, itemLines.slice(k), depth + 1, shift);
    el.append(li);
  }
  parent.append(el);
  return i;
}

function cells(row) {
  let text = row.trim();
  if (text.startsWith("|")) text = text.slice(1);
  if (text.endsWith("|")) text = text.slice(0, -1);
  return text.split("|").map((c) => c.trim());
}

function table(parent, lines, i, depth) {
  const head = cells(lines[i]);
  const aligns = cells(lines[i + 1]).map((c) =>
    c.startsWith(":") && c.endsWith(":") ? "center" : c.endsWith(":") ? "right" : null,
  );
  const row = (values, tag) =>
    h("tr", {}, head.map((_, n) => {
      const cell = inline(h(tag), values[n] ?? "", depth);
      if (aligns[n]) cell.setAttribute("class", `align-${aligns[n]}`);
      return cell;
    }));
  const body = [];
  let j = i + 2;
  while (j < lines.length && lines[j].trim() && lines[j].includes("|")) {
    body.push(row(cells(lines[j]), "td"));
    j += 1;
  }
  parent.append(
    h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "table" },
      h("table", {}, h("thead", {}, row(head, "th")), h("tbody", {}, body))),
  );
  return j;
}

function link(label, href, depth) {
  const url = safeUrl(href);
  if (url === null) return inline(h("span", { class: "md-link-refused" }), label || href, depth + 1);
  return inline(
    h("a", { href: url, rel: "noopener noreferrer nofollow", target: "_blank" }),
    label || url,
    depth + 1,
  );
}

function inline(el, text, depth) {
  if (depth > MAX_DEPTH) {
    el.append(text);
    return el;
  }
  const pattern = new RegExp(INLINE.source, "g");
  let last = 0;
  let m;
  while ((m = pattern.exec(text)) !== null) {
    if (m.index > last) el.append(text.slice(last, m.index));
    const g = m.groups;
    if (g.tick !== undefined) el.append(h("code", {}, g.code.replace(/^ (.*) $/s, "$1")));
    else if (g.href !== undefined) el.append(link(g.label, g.href, depth));
    else if (g.auto !== undefined) el.append(link(g.auto, g.auto, depth));
    else if (g.strong !== undefined || g.strong2 !== undefined) {
      el.append(inline(h("strong"), g.strong ?? g.strong2, depth + 1));
    } else if (g.del !== undefined) el.append(inline(h("del"), g.del, depth + 1));
    else if (g.em !== undefined || g.em2 !== undefined) {
      el.append(inline(h("em"), g.em ?? g.em2, depth + 1));
    } else if (g.br !== undefined) el.append(h("br"));
    last = pattern.lastIndex;
  }
  if (last < text.length) el.append(text.slice(last));
  return el;
}
