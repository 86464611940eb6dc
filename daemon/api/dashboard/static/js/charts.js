// Charts as inline SVG built node by node: the timeline of a task's streams, cost per role,
// and the governor's agent limit against memory over time.

import { s, uid } from "./dom.js";
import { duration, percent, tokens, usd } from "./format.js";

const ROW = 26;

/**
 * The drawing's width in SVG units: the width it gets on screen (so 12 px text stays 12 px
 * on a phone), between 320 and 760.
 */
function chartWidth() {
  const main = document.getElementById("main");
  const room = main ? main.clientWidth - 40 : 760;
  return Math.max(320, Math.min(760, room));
}

function labelWidth(width) {
  return width < 520 ? 96 : 170;
}

function chart(title, height, children, description, width) {
  const titleId = uid("chart-title");
  const descId = uid("chart-desc");
  return s(
    "svg",
    {
      class: "chart",
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-labelledby": `${titleId} ${descId}`,
      preserveAspectRatio: "xMinYMin meet",
    },
    s("title", { id: titleId }, title),
    s("desc", { id: descId }, description),
    children,
  );
}

function clip(text, max) {
  const value = String(text);
  return value.length > max ? `${value.slice(0, max - 1)}…` : value;
}

/** The streams on the longest chain of dependencies (by how long each took): its ids. */
export function criticalPath(streams, now) {
  const byId = new Map(streams.map((st) => [st.id, st]));
  const memo = new Map();
  const visiting = new Set();
  const length = (st) => Math.max(0, (st.ended_at ?? now) - (st.started_at ?? now));
  function longest(id) {
    if (memo.has(id)) return memo.get(id);
    const st = byId.get(id);
    if (!st || visiting.has(id)) return { total: 0, path: [] };
    visiting.add(id);
    let best = { total: 0, path: [] };
    for (const dep of st.depends_on || []) {
      const sub = longest(dep);
      if (sub.total > best.total) best = sub;
    }
    visiting.delete(id);
    const result = { total: best.total + length(st), path: [...best.path, id] };
    memo.set(id, result);
    return result;
  }
  let best = { total: 0, path: [] };
  for (const st of streams) {
    const found = longest(st.id);
    if (found.total > best.total) best = found;
  }
  return new Set(best.path);
}

function ticks(span, most) {
  const steps = [0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600];
  const step = steps.find((x) => span / x <= most) ?? 7200;
  const out = [];
  for (let t = 0; t <= span + 1e-9; t += step) out.push(t);
  return out;
}

/** When each stream ran, on one time axis; the critical path's bars are marked. */
export function timelineChart(streams, now = Date.now() / 1000) {
  const ran = streams.filter((st) => st.started_at);
  if (ran.length === 0) return null;
  const critical = criticalPath(ran, now);
  const t0 = Math.min(...ran.map((st) => st.started_at));
  const t1 = Math.max(...ran.map((st) => st.ended_at ?? now));
  const span = Math.max(t1 - t0, 0.001);
  const width = chartWidth();
  const labelW = labelWidth(width);
  const plotW = width - labelW - 20;
  const x = (t) => labelW + ((t - t0) / span) * plotW;
  const height = ran.length * ROW + 44;
  const rows = ran.map((st, n) => {
    const y = 8 + n * ROW;
    const end = st.ended_at ?? now;
    const isCritical = critical.has(st.id);
    const label = `${"  ".repeat(st.depth || 0)}${st.title || st.id}`;
    return s(
      "g",
      { class: `timeline-row state-${st.state}${isCritical ? " critical" : ""}` },
      s("text", { x: 4, y: y + 15, class: "label" }, clip(label, labelW < 170 ? 13 : 24)),
      s(
        "rect",
        { x: x(st.started_at), y: y + 3, width: Math.max(2, x(end) - x(st.started_at)), height: ROW - 8, rx: 3 },
        s("title", {}, `${st.title || st.id}: ${duration(end - st.started_at)}${st.ended_at ? "" : " (running)"}${isCritical ? ", on the critical path" : ""}`),
      ),
    );
  });
  const axisY = ran.length * ROW + 14;
  const axis = ticks(span, Math.max(3, Math.floor(plotW / 70))).map((t) =>
    s("g", { class: "tick" },
      s("line", { x1: x(t0 + t), x2: x(t0 + t), y1: 6, y2: axisY }),
      s("text", { x: x(t0 + t), y: axisY + 14, "text-anchor": "middle" }, duration(t))),
  );
  const names = [...critical].map((id) => ran.find((st) => st.id === id)?.title || id);
  return chart(
    "When each stream ran",
    height,
    [axis, rows],
    `${ran.length} streams over ${duration(span)}; critical path: ${names.join(" → ") || "none"}.`,
    width,
  );
}

/** Dollars per role, one bar each, with tokens and calls. */
export function costChart(perRole) {
  const roles = Object.entries(perRole || {});
  if (roles.length === 0) return null;
  const max = Math.max(...roles.map(([, u]) => u.cost_usd || 0), 1e-12);
  const width = chartWidth();
  const narrow = width < 520;
  const labelW = narrow ? 96 : 120;
  const plotW = width - labelW - (narrow ? 80 : 250);
  const bars = roles.map(([role, u], n) => {
    const y = 6 + n * ROW;
    const w = Math.max(2, ((u.cost_usd || 0) / max) * plotW);
    const figures = narrow ? usd(u.cost_usd) : `${usd(u.cost_usd)} · ${tokens(u.tokens)} tokens · ${u.calls} calls`;
    return s("g", { class: `cost-row role-${role}` },
      s("text", { x: 4, y: y + 15, class: "label" }, role),
      s("rect", { x: labelW, y: y + 3, width: w, height: ROW - 8, rx: 3 },
        s("title", {}, `${role}: ${usd(u.cost_usd)}, ${tokens(u.tokens)} tokens, ${u.calls} calls`)),
      s("text", { x: labelW + w + 8, y: y + 15 }, figures));
  });
  const summary = roles.map(([role, u]) => `${role} ${usd(u.cost_usd)} (${tokens(u.tokens)} tokens)`).join(", ");
  return chart("Cost per role", roles.length * ROW + 12, bars, summary, width);
}

/**
 * The governor over time: the agent limit and the agents running (left axis, agents)
 * against memory in use (right axis, %), with the soft and hard thresholds.
 */
export function governorChart(samples) {
  if (samples.length < 2) return null;
  const height = 220;
  const top = 14;
  const bottom = height - 30;
  const width = chartWidth();
  const left = 44;
  const right = width - 48;
  const last = samples[samples.length - 1];
  const tFirst = samples[0].at;
  const span = Math.max(last.at - tFirst, 1);
  const maxAgents = Math.max(1, ...samples.map((p) => Math.max(p.ceiling, p.limit, p.in_flight)));
  const x = (t) => left + ((t - tFirst) / span) * (right - left);
  const yAgents = (v) => bottom - (v / maxAgents) * (bottom - top);
  const yMem = (f) => bottom - Math.min(1, Math.max(0, f)) * (bottom - top);
  const line = (pick, y, cls) =>
    s("polyline", {
      class: cls,
      fill: "none",
      points: samples.filter((p) => pick(p) !== null && pick(p) !== undefined)
        .map((p) => `${x(p.at).toFixed(1)},${y(pick(p)).toFixed(1)}`).join(" "),
    });
  const threshold = (f, label) =>
    s("g", { class: "threshold" },
      s("line", { x1: left, x2: right, y1: yMem(f), y2: yMem(f) }),
      s("text", { x: left + 6, y: yMem(f) - 4 }, label));
  const memTicks = [0, 0.5, 1].map((f) =>
    s("text", { x: right + 6, y: yMem(f) + 4, class: "axis" }, `${f * 100}%`));
  const agentTicks = [0, Math.round(maxAgents / 2), maxAgents].map((v) =>
    s("text", { x: left - 6, y: yAgents(v) + 4, "text-anchor": "end", class: "axis" }, String(v)));
  return chart(
    "Agent limit against memory over time",
    height,
    [
      s("rect", { x: left, y: top, width: right - left, height: bottom - top, class: "plot" }),
      threshold(last.soft, `soft ${Math.round(last.soft * 100)}%`),
      threshold(last.hard, `hard ${Math.round(last.hard * 100)}%`),
      memTicks,
      agentTicks,
      line((p) => p.used_fraction, yMem, "memory"),
      line((p) => p.limit, yAgents, "limit"),
      line((p) => p.in_flight, yAgents, "in-flight"),
      s("text", { x: left, y: height - 8, class: "axis" }, `last ${duration(span)}`),
    ],
    `Now: limit ${last.limit} of ceiling ${last.ceiling}, ${last.in_flight} running, ` +
      `memory ${percent(last.used_fraction)} used (soft ${percent(last.soft)}, hard ${percent(last.hard)}).`,
    width,
  );
}
