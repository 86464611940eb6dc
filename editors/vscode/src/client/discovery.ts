// The discovery file (daemon.json): where the daemon listens, its token, and the identity check.
//
// This mirrors the CLI (daemon/home/paths.py, daemon/home/discovery.py, daemon/cli/client.py):
// `daemon.json` lives in $TIERD_HOME, else in $XDG_STATE_HOME/tierd (~/.local/state/tierd). A
// daemon.json can outlive its daemon with its pid and port taken by other programs, so the
// token is sent only once `/healthz`, asked without it, echoes the instance id daemon.json
// holds. A daemon.json without an instance id (an older tierd) cannot be verified and counts
// as no daemon. No `vscode` import here: this is unit-tested under plain node.

import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

/** The field of `/healthz`'s answer (and of daemon.json) that holds the instance id. */
export const HEALTH_INSTANCE_FIELD = "instance_id";

export interface Discovery {
  url: string;
  token: string;
  pid: number;
  version: string;
  /** null only for a daemon.json from a tierd older than the identity check. */
  instanceId: string | null;
}

/** No daemon answers for this home (the CLI's DaemonNotRunning, exit 3). */
export class DaemonNotRunning extends Error {
  constructor(detail = "") {
    super("no tierd daemon is running for this home" + (detail ? ` (${detail})` : ""));
    this.name = "DaemonNotRunning";
  }
}

/** The daemon accepted the connection but did not answer in time. */
export class DaemonNotResponding extends DaemonNotRunning {
  constructor(url: string, timeoutMs: number) {
    super();
    this.message =
      `the tierd daemon at ${url} did not answer within ${timeoutMs / 1000}s; ` +
      "it may be overloaded or stuck";
    this.name = "DaemonNotResponding";
  }
}

function expandUser(p: string, env: NodeJS.ProcessEnv): string {
  if (p === "~" || p.startsWith("~/")) {
    return path.join(env.HOME || os.homedir(), p.slice(1));
  }
  return p;
}

function resolvePath(p: string): string {
  // Python's Path.resolve(): absolute, symlinks resolved where the path exists.
  const abs = path.resolve(p);
  try {
    return fs.realpathSync(abs);
  } catch {
    return abs;
  }
}

function xdg(env: NodeJS.ProcessEnv, variable: string, fallback: string): string {
  const value = env[variable] || "";
  // The XDG spec says relative paths are invalid and must be ignored.
  if (value && path.isAbsolute(value)) {
    return value;
  }
  return path.join(env.HOME || os.homedir(), fallback);
}

/**
 * The directory that holds daemon.json: `home` (the `tierd.home` setting) when given, else
 * $TIERD_HOME, else $XDG_STATE_HOME/tierd (default ~/.local/state/tierd).
 */
export function stateDir(env: NodeJS.ProcessEnv = process.env, home?: string): string {
  const given = (home || "").trim() || env.TIERD_HOME || "";
  if (given) {
    return resolvePath(expandUser(given, env));
  }
  return path.join(xdg(env, "XDG_STATE_HOME", ".local/state"), "tierd");
}

export function discoveryFile(env: NodeJS.ProcessEnv = process.env, home?: string): string {
  return path.join(stateDir(env, home), "daemon.json");
}

function pythonInt(value: unknown): number | null {
  // int() of the CLI: an integer, a float (truncated) or a string of an integer.
  if (typeof value === "number" && Number.isFinite(value)) {
    return Math.trunc(value);
  }
  if (typeof value === "string" && /^\s*[+-]?\d+\s*$/.test(value)) {
    return Number.parseInt(value, 10);
  }
  if (typeof value === "boolean") {
    return value ? 1 : 0;
  }
  return null;
}

/** daemon.json read as the CLI reads it; null when missing, damaged or hand-made. */
export function readDiscovery(file: string): Discovery | null {
  let data: unknown;
  try {
    data = JSON.parse(fs.readFileSync(file, "utf-8"));
  } catch {
    return null;
  }
  if (data === null || typeof data !== "object" || Array.isArray(data)) {
    return null;
  }
  const doc = data as Record<string, unknown>;
  if (!("url" in doc) || !("token" in doc) || !("pid" in doc)) {
    return null;
  }
  const pid = pythonInt(doc.pid);
  if (pid === null || !(pid > 0 && pid < 2 ** 31)) {
    return null; // no process has it: a hand-made or damaged file
  }
  const instance = doc[HEALTH_INSTANCE_FIELD];
  return {
    url: String(doc.url),
    token: String(doc.token),
    pid,
    version: doc.version === undefined ? "" : String(doc.version),
    instanceId: typeof instance === "string" && instance ? instance : null,
  };
}

/** Whether a process with this pid exists and is not a zombie. */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EPERM") {
      return false;
    }
  }
  try {
    // /proc/<pid>/stat: "pid (comm) S ..."; the comm may hold spaces and parentheses.
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf-8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return true; // no /proc (not Linux): the signal said it exists
  }
}

/**
 * Why the server that answered `/healthz` with `health` (its parsed JSON body) is not the
 * daemon daemon.json describes, or null when it is. Until this says null, send no token.
 */
export function identityProblem(info: Discovery, health: unknown): string | null {
  if (!info.instanceId) {
    return (
      "its daemon.json has no instance id (written by an older tierd), so it cannot be " +
      "verified: restart the daemon"
    );
  }
  const claimed =
    health !== null && typeof health === "object" && !Array.isArray(health)
      ? (health as Record<string, unknown>)[HEALTH_INSTANCE_FIELD]
      : undefined;
  const ours = Buffer.from(info.instanceId, "utf-8");
  const theirs = typeof claimed === "string" ? Buffer.from(claimed, "utf-8") : null;
  if (theirs === null || theirs.length !== ours.length || !crypto.timingSafeEqual(theirs, ours)) {
    return `the server at ${info.url} is not the tierd daemon that wrote daemon.json`;
  }
  return null;
}
