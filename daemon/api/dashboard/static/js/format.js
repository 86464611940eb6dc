// Numbers and states as people read them.

export const LIVE_STATES = new Set([
  "queued", "planning", "running", "reviewing", "merging", "input_required", "awaiting_approval",
]);
export const NEEDS_ME = new Set(["input_required", "awaiting_approval"]);
export const ENDED = new Set(["completed", "failed", "canceled"]);

const LABELS = {
  input_required: "needs answers",
  awaiting_approval: "awaiting approval",
};

export function stateLabel(state) {
  return LABELS[state] || String(state || "").replaceAll("_", " ");
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} d`;
}

export function age(unixSeconds) {
  if (!unixSeconds) return "—";
  return duration(Math.max(0, Date.now() / 1000 - unixSeconds));
}

export function usd(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "—";
  if (value === 0) return "$0";
  if (value < 0.01) return `$${value.toFixed(4)}`;
  return `$${value.toFixed(2)}`;
}

export function tokens(value) {
  if (value === null || value === undefined) return "—";
  return Math.round(value).toLocaleString("en-US");
}

export function percent(fraction) {
  if (fraction === null || fraction === undefined) return "—";
  return `${(fraction * 100).toFixed(1)} %`;
}

export function bytes(value) {
  if (value === null || value === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = value;
  let unit = 0;
  while (v >= 1024 && unit < units.length - 1) {
    v /= 1024;
    unit += 1;
  }
  return `${v.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}
