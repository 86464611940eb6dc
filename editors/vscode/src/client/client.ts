// A small client for the daemon's API: JSON-RPC calls on keep-alive connections, REST where
// the API has no method (the dashboard login link), and the discovery of the daemon.
//
// It mirrors the CLI's client (daemon/cli/client.py): `Client.discover` reads daemon.json,
// checks the pid, asks `/healthz` without the token and sends the token only to the daemon
// whose instance id it echoes. The token stays in this process: it is sent only as the
// Authorization header of requests to that daemon. No `vscode` import here.

import * as crypto from "node:crypto";
import * as http from "node:http";

import {
  DaemonNotResponding,
  DaemonNotRunning,
  Discovery,
  discoveryFile,
  identityProblem,
  pidAlive,
  readDiscovery,
} from "./discovery";

/** An error answer from the daemon: its JSON-RPC code (or HTTP status), message and data. */
export class ApiError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data: unknown = null,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

/** Error codes of the daemon's API (README "The API in brief"). */
export const CODES = {
  taskNotFound: -32001,
  wrongState: -32002,
  noModel: -32003,
  unauthorized: -32004,
  busy: -32005,
  diskFull: -32006,
  invalidParams: -32602,
} as const;

/** Errors that mean the daemon is not there (or went away) rather than that it said no. */
const GONE = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ENOENT", "ECONNABORTED", "EHOSTUNREACH"]);

export interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export function httpError(status: number, body: Buffer): ApiError {
  try {
    const err = JSON.parse(body.toString("utf-8")).error;
    if (err && typeof err === "object") {
      const code = Number.isInteger(err.code) ? err.code : status;
      return new ApiError(code, String(err.message || "") || `HTTP ${status}`, err.data ?? err);
    }
  } catch {
    // not JSON: the text itself below
  }
  const text = body.toString("utf-8").trim();
  return new ApiError(status, `HTTP ${status}` + (text ? `: ${text.slice(0, 300)}` : ""));
}

export interface SubmitOptions {
  context?: string;
  options?: Record<string, unknown>;
  repo?: string;
  base?: string;
  includeUncommitted?: boolean;
  idempotencyKey?: string;
}

export type Json = Record<string, any>;

export class Client {
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly timeoutMs: number;
  daemonVersion: string | null;
  private readonly token: string;
  private readonly agent: http.Agent;
  private nextId = 0;

  constructor(
    url: string,
    token: string,
    opts: { timeoutMs?: number; daemonVersion?: string | null } = {},
  ) {
    this.url = url.replace(/\/+$/, "");
    let parts: URL;
    try {
      parts = new URL(this.url);
    } catch {
      throw new TypeError(`the daemon URL must be http://host:port, not ${JSON.stringify(url)}`);
    }
    if (parts.protocol !== "http:" || !parts.hostname) {
      throw new TypeError(`the daemon URL must be http://host:port, not ${JSON.stringify(url)}`);
    }
    this.host = parts.hostname.replace(/^\[(.*)\]$/, "$1");
    this.port = parts.port ? Number(parts.port) : 80;
    this.token = token;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.daemonVersion = opts.daemonVersion ?? null;
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  }

  /**
   * The daemon of this home, verified: daemon.json read, its pid alive, and `/healthz`
   * answering its instance id. Throws DaemonNotRunning (with the reason) otherwise.
   */
  static async discover(
    opts: { env?: NodeJS.ProcessEnv; home?: string; timeoutMs?: number } = {},
  ): Promise<Client> {
    const file = discoveryFile(opts.env ?? process.env, opts.home);
    const info = readDiscovery(file);
    if (info === null) {
      throw new DaemonNotRunning(`no ${file}`);
    }
    if (!pidAlive(info.pid)) {
      throw new DaemonNotRunning(`the daemon with pid ${info.pid} is gone`);
    }
    let found: Client;
    try {
      found = new Client(info.url, info.token, {
        timeoutMs: opts.timeoutMs,
        daemonVersion: info.version,
      });
    } catch (err) {
      throw new DaemonNotRunning(`${file}: ${(err as Error).message}`);
    }
    await found.verify(info);
    return found;
  }

  /**
   * Make sure the server at our URL is the daemon `info` describes before any request carries
   * the token: ask `/healthz` (open, no token) and compare the instance id it echoes.
   */
  async verify(info: Discovery): Promise<void> {
    const res = await this.request("GET", "/healthz", undefined, { auth: false });
    let health: unknown = null;
    if (res.status === 200) {
      try {
        health = JSON.parse(res.body.toString("utf-8"));
      } catch {
        health = null;
      }
    }
    const problem = identityProblem(info, health);
    if (problem !== null) {
      this.close();
      throw new DaemonNotRunning(`no daemon answering: ${problem}`);
    }
  }

  close(): void {
    this.agent.destroy();
  }

  /** The headers of an authenticated request (for the event streams). */
  authHeaders(): Record<string, string> {
    return { Authorization: `Bearer ${this.token}` };
  }

  /** One request; (status, headers, body). `auth: false` sends no token (for `/healthz`). */
  request(
    method: string,
    path: string,
    body?: unknown,
    opts: { auth?: boolean; timeoutMs?: number } = {},
  ): Promise<Response> {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body), "utf-8");
    const headers: Record<string, string> = {
      ...(opts.auth === false ? {} : this.authHeaders()),
      Accept: "application/json",
    };
    if (data !== undefined) {
      headers["Content-Type"] = "application/json";
      headers["Content-Length"] = String(data.length);
    }
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    const once = (): Promise<Response> =>
      new Promise((resolve, reject) => {
        const req = http.request(
          { host: this.host, port: this.port, method, path, headers, agent: this.agent },
          (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("end", () =>
              resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
            );
            res.on("error", (err) => reject(this.transportError(err)));
          },
        );
        req.setTimeout(timeoutMs, () => {
          req.destroy(new DaemonNotResponding(this.url, timeoutMs));
        });
        req.on("error", (err: NodeJS.ErrnoException) => {
          // A keep-alive connection the server closed as the request went out: the request
          // never reached it, so sending it again on a new connection is safe (Node's
          // documented `reusedSocket` check).
          if (req.reusedSocket && err.code === "ECONNRESET") {
            reject(Object.assign(new Error("retry"), { retry: true }));
            return;
          }
          reject(this.transportError(err));
        });
        req.end(data);
      });
    return once().catch((err) => (err && err.retry ? once() : Promise.reject(err)));
  }

  private transportError(err: NodeJS.ErrnoException): Error {
    if (err instanceof DaemonNotRunning) {
      return err;
    }
    if (err.code && GONE.has(err.code)) {
      return new DaemonNotRunning(`nothing answers at ${this.url}`);
    }
    if ((err.code || "").startsWith("HPE_")) {
      return new DaemonNotRunning(`the server at ${this.url} does not speak HTTP`);
    }
    return new DaemonNotRunning(`cannot connect to ${this.url}: ${err.message}`);
  }

  async rpc(method: string, params: Json = {}): Promise<any> {
    this.nextId += 1;
    const res = await this.request("POST", "/rpc", {
      jsonrpc: "2.0",
      id: this.nextId,
      method,
      params,
    });
    if (res.status !== 200) {
      throw httpError(res.status, res.body);
    }
    let doc: Json;
    try {
      doc = JSON.parse(res.body.toString("utf-8"));
    } catch {
      throw new ApiError(res.status, `not a JSON-RPC answer: ${res.body.subarray(0, 200).toString()}`);
    }
    if (doc.error) {
      throw new ApiError(doc.error.code, doc.error.message, doc.error.data ?? null);
    }
    return doc.result;
  }

  // --- the API ------------------------------------------------------------------------------

  /**
   * Submit a task (a code task with `repo`, an absolute path). Every submit carries an
   * idempotency key, so when the connection drops before the answer it is sent once more
   * with the same key: the daemon answers the task it may already have made.
   */
  async submit(goal: string, opts: SubmitOptions = {}): Promise<Json> {
    const params: Json = {
      goal,
      context: opts.context ?? "",
      options: opts.options ?? {},
      idempotency_key: opts.idempotencyKey ?? crypto.randomUUID(),
    };
    // Sent only when used: a daemon from before code tasks refuses fields it does not know.
    if (opts.repo !== undefined) {
      params.repo = opts.repo;
    }
    if (opts.base !== undefined) {
      params.base = opts.base;
    }
    if (opts.includeUncommitted) {
      params.include_uncommitted = true;
    }
    try {
      return await this.rpc("task/submit", params);
    } catch (err) {
      if (err instanceof DaemonNotResponding || !(err instanceof DaemonNotRunning)) {
        throw err;
      }
      return this.rpc("task/submit", params);
    }
  }

  get(taskId: string): Promise<Json> {
    return this.rpc("task/get", { task_id: taskId });
  }

  list(opts: { state?: string | string[]; limit?: number; cursor?: string } = {}): Promise<Json> {
    const params: Json = { limit: opts.limit ?? 50 };
    let state = opts.state;
    if (Array.isArray(state) && state.length === 1) {
      state = state[0]; // a daemon from before lists of states takes one
    }
    if (state && state.length) {
      params.state = state;
    }
    if (opts.cursor) {
      params.cursor = opts.cursor;
    }
    return this.rpc("task/list", params);
  }

  cancel(taskId: string): Promise<Json> {
    return this.rpc("task/cancel", { task_id: taskId });
  }

  answer(taskId: string, answers: Record<string, string>): Promise<Json> {
    return this.rpc("task/answer", { task_id: taskId, answers });
  }

  approve(
    taskId: string,
    decision: "approve" | "reject",
    opts: { comment?: string; apply?: string } = {},
  ): Promise<Json> {
    const params: Json = { task_id: taskId, decision };
    if (opts.comment !== undefined) {
      params.comment = opts.comment;
    }
    if (opts.apply !== undefined) {
      params.apply = opts.apply;
    }
    return this.rpc("task/approve", params);
  }

  diff(taskId: string): Promise<Json> {
    return this.rpc("task/diff", { task_id: taskId });
  }

  status(): Promise<Json> {
    return this.rpc("daemon/status");
  }

  describe(): Promise<Json> {
    return this.rpc("rpc/discover");
  }

  /** A one-time dashboard login link: {url, expires_in_s}. The link holds no token. */
  async loginLink(): Promise<{ url: string; expires_in_s: number }> {
    const res = await this.request("POST", "/v1/dashboard/login-links");
    if (res.status !== 200) {
      throw httpError(res.status, res.body);
    }
    return JSON.parse(res.body.toString("utf-8"));
  }
}

/** One choice of task/approve's `apply` parameter, as `rpc/discover` describes it. */
export interface ApplyChoice {
  value: string;
  description: string;
}

const APPLY_FALLBACK = ["branch", "merge", "patch"];

/**
 * The apply choices of `task/approve` from the daemon's OpenRPC document (`rpc/discover`):
 * the enum of its `apply` parameter, with the parameter's description. The daemon's own
 * list, so a choice it adds shows up without a new extension.
 */
export function applyChoices(openrpc: unknown): { choices: string[]; description: string } {
  const methods = (openrpc as Json | null)?.methods;
  const approve = Array.isArray(methods) ? methods.find((m: Json) => m?.name === "task/approve") : null;
  const param = Array.isArray(approve?.params)
    ? approve.params.find((p: Json) => p?.name === "apply")
    : null;
  const schema: Json = param?.schema ?? {};
  const found: string[] = [];
  for (const option of [schema, ...(Array.isArray(schema.anyOf) ? schema.anyOf : [])]) {
    if (Array.isArray(option?.enum)) {
      found.push(...option.enum.filter((v: unknown) => typeof v === "string"));
    }
  }
  return {
    choices: found.length ? [...new Set(found)] : APPLY_FALLBACK,
    description: typeof schema.description === "string" ? schema.description : "",
  };
}
