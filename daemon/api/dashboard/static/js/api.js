// The daemon's own API, as the page uses it: REST under /v1, JSON-RPC batches at /rpc. The
// session cookie goes along by itself (same origin); every request also carries the
// session's page key, which the login handed to this origin only (see `startSession`).

let csrf = null;
let signedOutHandler = () => {};

export class ApiError extends Error {
  constructor(status, message, data) {
    super(message);
    this.status = status;
    this.data = data;
  }
}

export function onSignedOut(handler) {
  signedOutHandler = handler;
}

const KEY_STORE = "tierd.sessionKey";

/**
 * This browser's session, if it has one (false: `tierd open`). A login sends the browser to
 * /#session=<page key>: the key moves from the address into this origin's storage (which no
 * other origin, another port included, can read) and out of the history entry.
 */
export async function startSession() {
  const found = location.hash.match(/^#session=([A-Za-z0-9_-]+)$/);
  if (found) {
    localStorage.setItem(KEY_STORE, found[1]);
    history.replaceState(null, "", `${location.pathname}#/inbox`);
  }
  csrf = localStorage.getItem(KEY_STORE);
  if (!csrf) return false;
  const response = await fetch("/v1/status", { headers: sessionHeaders(), cache: "no-store" });
  if (response.ok) return true;
  forget();
  return false;
}

function forget() {
  csrf = null;
  localStorage.removeItem(KEY_STORE);
}

/** The headers that make a request this session's. */
export function sessionHeaders() {
  return { "x-tierd-csrf": csrf || "" };
}

export async function logout() {
  try {
    await fetch("/logout", { method: "POST", headers: sessionHeaders() });
  } finally {
    forget();
  }
}

async function call(method, path, body, extraHeaders) {
  const headers = { accept: "application/json", ...sessionHeaders(), ...extraHeaders };
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  const text = await response.text();
  let doc = null;
  try {
    doc = text ? JSON.parse(text) : null;
  } catch {
    doc = null;
  }
  if (response.status === 401) {
    forget();
    signedOutHandler();
    throw new ApiError(401, "signed out: run `tierd open` for a new sign-in link", null);
  }
  if (!response.ok) {
    const error = (doc && doc.error) || {};
    throw new ApiError(response.status, error.message || `HTTP ${response.status}`, error.data);
  }
  return doc;
}

export const api = {
  get: (path) => call("GET", path),
  post: (path, body, headers) => call("POST", path, body, headers),
  put: (path, body) => call("PUT", path, body),
};

export const taskPath = (id) => `/v1/tasks/${encodeURIComponent(id)}`;

/** Several JSON-RPC calls in one request: [[method, params], ...] -> results (or errors). */
export async function rpcBatch(calls) {
  if (calls.length === 0) return [];
  const out = [];
  // The daemon takes at most 100 calls per batch.
  for (let start = 0; start < calls.length; start += 100) {
    const chunk = calls.slice(start, start + 100);
    const replies = await call(
      "POST",
      "/rpc",
      chunk.map(([method, params], i) => ({ jsonrpc: "2.0", id: start + i, method, params })),
    );
    const byId = new Map((replies || []).map((r) => [r.id, r]));
    chunk.forEach((_, i) => {
      const reply = byId.get(start + i);
      out.push(reply && "result" in reply ? reply.result : new ApiError(0, reply?.error?.message || "no answer"));
    });
  }
  return out;
}

/** A fresh idempotency key, so a submit sent twice makes one task. */
export function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}
