// The settings every task obeys, changed through config/set: the rules (parallelize mode,
// coupled areas, instructions), review, the concurrency ceiling with the governor's limit
// against memory over time, and the model of each role.

import { api } from "../api.js";
import { governorChart } from "../charts.js";
import { clear, h, rerender, toast, uid } from "../dom.js";
import { bytes, percent } from "../format.js";
import { statusFeed } from "../status.js";

const ROLES = ["orchestrator", "planner", "executor"];

function sourceNote(sources, key) {
  const source = sources[key];
  return source ? h("span", { class: "source" }, `from ${source}`) : null;
}

async function save(key, value, after) {
  try {
    await api.put("/v1/config", { key, value });
    toast(`Saved ${key}.`);
    await after();
  } catch (err) {
    toast(`${key}: ${err.message}`, "error");
  }
}

/** A labelled control with a Save button for one key. */
function setting(key, label, control, doc, after, read = () => control.value) {
  const id = uid("setting");
  control.id = id;
  control.dataset.key = `control-${key}`;
  const button = h("button", { type: "submit", "data-key": `save-${key}` }, "Save");
  const form = h("form", { class: "setting" },
    label ? h("label", { for: id }, label) : null, control, button, sourceNote(doc.sources, key));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    button.disabled = true;
    save(key, read(), after).finally(() => { button.disabled = false; });
  });
  return form;
}

function numberSetting(key, label, value, min, max, doc, after) {
  const control = number(value, min, max);
  return setting(key, label, control, doc, after, () => Number(control.value));
}

function choice(value, options) {
  return h("select", {}, options.map((o) => h("option", { value: o, selected: o === value }, o)));
}

function number(value, min, max) {
  return h("input", { type: "number", value: String(value), min: String(min), max: String(max), inputmode: "numeric" });
}

/** A list setting (coupled areas, instructions): each entry with Remove, and an Add form. */
function listSetting(key, title, items, show, parse, addLabel, doc, after) {
  const inputId = uid("add");
  const input = h("input", { id: inputId, type: "text", "data-key": `add-${key}` });
  const add = h("form", { class: "add" },
    h("label", { for: inputId }, addLabel), input, h("button", { type: "submit", "data-key": `add-button-${key}` }, "Add"));
  add.addEventListener("submit", (event) => {
    event.preventDefault();
    const entry = parse(input.value);
    if (entry === null) return;
    save(key, [...items, entry], after);
  });
  return h("div", { class: "list-setting" },
    h("h3", {}, title, " ", sourceNote(doc.sources, key)),
    items.length
      ? h("ul", {}, items.map((item, n) =>
          h("li", {}, h("span", {}, show(item)), " ",
            h("button", {
              type: "button", class: "small", "data-key": `remove-${key}-${n}`,
              "aria-label": `Remove ${show(item)}`,
              onclick: () => save(key, items.filter((_, m) => m !== n), after),
            }, "Remove"))))
      : h("p", { class: "quiet" }, "None."),
    add);
}

function rules(doc, after) {
  const r = doc.config.rules;
  return [
    setting("rules.parallelize", "Parallelize", choice(r.parallelize, ["when-possible", "always", "never"]), doc, after),
    listSetting("rules.coupled", "Coupled areas (never split across streams)", r.coupled,
      (group) => group.join(" + "),
      (text) => {
        const group = text.split(/[\s,]+/).filter(Boolean);
        return group.length ? group : null;
      }, "Areas to couple (separated by spaces or commas)", doc, after),
    listSetting("rules.instructions", "Instructions for every planner and executor", r.instructions,
      (text) => text, (text) => (text.trim() ? text.trim() : null), "New instruction", doc, after),
  ];
}

function price(status, role) {
  const known = status && status.models ? status.models[role] : null;
  if (!status || !status.models) return "checking…";
  if (!known || known.input_usd_per_mtok === null) return "price unknown";
  const usd = (x) => `$${x.toFixed(x < 1 ? 3 : 2)}`;
  return `${usd(known.input_usd_per_mtok)} in, ${usd(known.output_usd_per_mtok)} out per million tokens`;
}

function models(doc, after, status) {
  return h("div", { class: "models" }, ROLES.map((role) => {
    const m = doc.config.models[role];
    const input = h("input", { type: "text", value: m.model, size: 24 });
    return h("article", { class: "model", "aria-label": `The ${role}` },
      h("h3", {}, role),
      setting(`models.${role}.model`, "Model", input, doc, after),
      h("dl", { class: "figures" },
        h("div", { class: "metric" }, h("dt", {}, "Server"), h("dd", {}, m.api_base || "the provider's own")),
        h("div", { class: "metric" }, h("dt", {}, "Fallbacks"), h("dd", {}, m.fallbacks.length ? m.fallbacks.join(", ") : "none")),
        h("div", { class: "metric" }, h("dt", {}, "Price"), h("dd", { class: "price", "data-role": role }, price(status, role)))));
  }));
}

function legend() {
  const item = (cls, text) => h("span", {}, h("span", { class: `swatch ${cls}` }), text);
  return h("p", { class: "legend" },
    item("limit", "agent limit"), item("in-flight", "agents running"), item("memory", "memory in use (right axis)"));
}

export function mount(main) {
  const content = h("div", {}, h("p", {}, "Loading…"));
  const governor = h("div", { class: "governor" });
  const chart = h("div");
  main.append(h("h1", { tabindex: "-1" }, "Settings"), content);

  async function load() {
    const doc = await api.get("/v1/config");
    const status = await api.get("/v1/status").catch(() => null);
    const c = doc.config;
    rerender(content, () => [
      h("section", { "aria-labelledby": "rules-title" }, h("h2", { id: "rules-title" }, "Rules"), rules(doc, load)),
      h("section", { "aria-labelledby": "review-title" }, h("h2", { id: "review-title" }, "Review"),
        setting("review.approval", "Approval of merged results", choice(c.review.approval, ["none", "required"]), doc, load),
        numberSetting("review.max_revisions", "Rejections before a task fails", c.review.max_revisions, 0, 20, doc, load),
      ),
      h("section", { "aria-labelledby": "concurrency-title" }, h("h2", { id: "concurrency-title" }, "Concurrency"),
        numberSetting("concurrency.ceiling", "Most agents at once (ceiling)", c.concurrency.ceiling, 1, 10000, doc, load),
        governor, chart),
      h("section", { "aria-labelledby": "models-title" }, h("h2", { id: "models-title" }, "Models"), models(doc, load, status)),
    ]);
  }

  load().catch((err) => rerender(content, () => h("p", { class: "error" }, `Could not load the settings: ${err.message}`)));
  statusFeed.setPeriod(1000);
  const unsubscribe = statusFeed.subscribe((status, samples) => {
    // Prices arrive once the daemon's engine has loaded: fill them in as they do.
    for (const cell of content.querySelectorAll("dd.price")) {
      cell.textContent = price(status, cell.dataset.role);
    }
    const c = status.concurrency;
    rerender(governor, () => h("dl", { class: "figures" },
      [["Agent limit now", `${c.limit} of ${c.ceiling}`], ["Running", String(c.in_flight)], ["Waiting", String(c.waiting)],
        ["Memory used", percent(c.memory.used_fraction)], ["Daemon memory", bytes(c.memory.daemon_rss)],
        ["Why", c.reason]].map(([k, v]) => h("div", { class: "metric" }, h("dt", {}, k), h("dd", {}, v)))));
    const svg = governorChart(samples);
    clear(chart);
    chart.append(svg || h("p", { class: "quiet" }, "Sampling…"), legend());
  });
  return () => {
    unsubscribe();
    statusFeed.setPeriod(3000);
  };
}
