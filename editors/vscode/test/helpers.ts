// What the unit tests share: a tiny HTTP server on a free loopback port that plays the daemon
// (each request recorded with its headers), a daemon.json for it, and temporary directories.

import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as os from "node:os";
import * as path from "node:path";

export interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export type Handler = (req: http.IncomingMessage, res: http.ServerResponse, body: string, seen: Seen) => void;

export interface FakeDaemon {
  url: string;
  port: number;
  seen: Seen[];
  server: http.Server;
  close(): Promise<void>;
}

export async function fakeDaemon(handler: Handler): Promise<FakeDaemon> {
  const seen: Seen[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf-8");
      const entry = { method: req.method ?? "", url: req.url ?? "", headers: req.headers, body };
      seen.push(entry);
      handler(req, res, body, entry);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    seen,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export function json(res: http.ServerResponse, status: number, doc: unknown): void {
  const body = JSON.stringify(doc);
  res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) });
  res.end(body);
}

/** Answer a JSON-RPC request with `result(method, params)` (or its thrown {code, message}). */
export function rpcAnswer(res: http.ServerResponse, body: string, result: (method: string, params: any) => unknown): void {
  const req = JSON.parse(body);
  try {
    json(res, 200, { jsonrpc: "2.0", id: req.id, result: result(req.method, req.params) });
  } catch (err) {
    const e = err as { code: number; message: string; data?: unknown };
    json(res, 200, { jsonrpc: "2.0", id: req.id, error: { code: e.code, message: e.message, data: e.data ?? null } });
  }
}

export function tmpDir(prefix = "tierd-vscode-test-"): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export const TOKEN = "t".repeat(43);
export const INSTANCE = "0123456789abcdef0123456789abcdef";

/** A home whose daemon.json names `url`, this process's pid and the instance id. */
export function homeFor(url: string, extra: Record<string, unknown> = {}): string {
  const home = tmpDir();
  const doc = { url, token: TOKEN, pid: process.pid, version: "0.1.0", instance_id: INSTANCE, ...extra };
  fs.writeFileSync(path.join(home, "daemon.json"), JSON.stringify(doc), { mode: 0o600 });
  return home;
}

export function sse(res: http.ServerResponse): void {
  res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache" });
}

export function sendEvent(res: http.ServerResponse, ev: { id: number; type: string; task_id?: string | null; data?: unknown }): void {
  const full = { task_id: null, data: {}, created_at: 1_000_000 + ev.id, ...ev };
  res.write(`id: ${ev.id}\r\nevent: ${ev.type}\r\ndata: ${JSON.stringify(full)}\r\n\r\n`);
}

export function until(predicate: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const tick = (): void => {
      if (predicate()) {
        resolve();
      } else if (Date.now() > deadline) {
        reject(new Error(`condition not met within ${timeoutMs} ms`));
      } else {
        setTimeout(tick, 10);
      }
    };
    tick();
  });
}
