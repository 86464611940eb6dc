// Building the page without HTML strings: every text goes in through textContent (or a text
// node), never innerHTML, so nothing a task, a model or a user wrote can become markup.

const PROPS = new Set(["value", "checked", "disabled", "hidden", "selected", "open", "required", "tabIndex"]);
const SVG_NS = "http://www.w3.org/2000/svg";

function setProps(el, props) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.setAttribute("class", value);
    else if (key === "text") el.textContent = String(value);
    else if (key.startsWith("on")) {
      // Handlers are functions only: a string here would be inline code.
      if (typeof value === "function") el.addEventListener(key.slice(2), value);
    } else if (key === "dataset") Object.assign(el.dataset, value);
    else if (PROPS.has(key)) el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
}

/** Append children: nodes as they are, anything else as text. */
export function append(el, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** An HTML element: h("a", {href: "#/tasks"}, "Tasks"). */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  setProps(el, props);
  return append(el, children);
}

/** An SVG element, built the same way. */
export function s(tag, props, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setProps(el, props);
  return append(el, children);
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

let uniqueCounter = 0;
/** A fresh id for label/aria wiring. */
export function uid(prefix) {
  uniqueCounter += 1;
  return `${prefix}-${uniqueCounter}`;
}

/**
 * Re-render `container` with `render()` without losing the reader's place: the focused
 * element and open <details> are found again by their data-key.
 */
export function rerender(container, render) {
  const active = document.activeElement;
  const focusKey = active && container.contains(active) ? active.dataset.key : undefined;
  const openKeys = new Set(
    [...container.querySelectorAll("details[open][data-key]")].map((d) => d.dataset.key),
  );
  const closedKeys = new Set(
    [...container.querySelectorAll("details:not([open])[data-key]")].map((d) => d.dataset.key),
  );
  clear(container);
  append(container, render());
  for (const d of container.querySelectorAll("details[data-key]")) {
    if (openKeys.has(d.dataset.key)) d.open = true;
    if (closedKeys.has(d.dataset.key)) d.open = false;
  }
  if (focusKey !== undefined) {
    const again = [...container.querySelectorAll("[data-key]")].find(
      (el) => el.dataset.key === focusKey,
    );
    if (again) again.focus();
  }
}

/** A short message for everyone, screen readers included. */
export function toast(message, kind = "info") {
  const box = document.getElementById("toast");
  if (!box) return;
  const item = h("p", { class: `toast ${kind}` }, message);
  box.append(item);
  setTimeout(() => item.remove(), kind === "error" ? 9000 : 4000);
}
