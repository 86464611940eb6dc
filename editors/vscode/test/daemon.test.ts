// Against a real daemon: "Start the daemon" (`tierd serve --detach`), discovery and the
// identity check, rpc/discover's apply choices, and LiveTasks following a task submitted and
// canceled, then across a daemon restart (another port, another instance id): found again and
// resumed with Last-Event-ID, no event twice.
//
// The daemon is the repository's own (`.venv/bin/tierd`, made by the README's setup command);
// TIERD_EXECUTABLE names another. Its models point at a closed port: nothing here needs one.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { test } from "node:test";

import { ApiError, Client, applyChoices } from "../src/client/client";
import { readDiscovery } from "../src/client/discovery";
import { LiveTasks } from "../src/client/live";
import type { DaemonEvent } from "../src/client/sse";
import { startDaemon } from "../src/client/start";
import { tmpDir, until } from "./helpers";

const REPO = path.resolve(__dirname, "../../../..");
const TIERD = process.env.TIERD_EXECUTABLE || path.join(REPO, ".venv", "bin", "tierd");

async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

async function home(): Promise<string> {
  const dir = tmpDir("tierd-vscode-home-");
  const api = `http://127.0.0.1:${await closedPort()}/v1`;
  const models = ["orchestrator", "planner", "executor"]
    .map((role) => `[models.${role}]\nmodel = "openai/gpt-5-mini"\napi_base = "${api}"\napi_key_env = ""\n`)
    .join("\n");
  fs.writeFileSync(path.join(dir, "config.toml"), `[server]\nport = 0\n\n${models}`);
  return dir;
}

function stop(dir: string): void {
  execFileSync(TIERD, ["stop"], { env: { ...process.env, TIERD_HOME: dir }, stdio: "pipe", timeout: 60_000 });
}

test("a real daemon: started, found, followed, and found again after a restart", { timeout: 180_000 }, async () => {
  assert.ok(
    fs.existsSync(TIERD),
    `no tierd at ${TIERD}: run the README's setup command (it makes .venv), or set TIERD_EXECUTABLE`,
  );
  const dir = await home();
  const env = { ...process.env, TIERD_HOME: dir };

  // Nothing answers yet: the reason says so.
  await assert.rejects(Client.discover({ env }), /no tierd daemon is running for this home \(no .*daemon\.json\)/);
  const started = await startDaemon(TIERD, { home: dir, env: process.env });
  assert.ok(started.ok, started.output);
  assert.match(started.output, /tierd daemon started in the background \(pid \d+\) at http:\/\/127\.0\.0\.1:\d+/);
  const first = readDiscovery(path.join(dir, "daemon.json"))!;
  assert.equal(fs.statSync(path.join(dir, "daemon.json")).mode & 0o077, 0); // the token file is private

  const lt = new LiveTasks({ discover: () => Client.discover({ env }), retryMs: 200, countsDelayMs: 20 });
  const events: DaemonEvent[] = [];
  lt.on("event", (ev: DaemonEvent) => events.push(ev));
  try {
    const client = await Client.discover({ env });
    assert.equal(client.url, first.url);
    const status = await client.status();
    assert.equal(status.pid, first.pid);
    assert.deepEqual(applyChoices(await client.describe()).choices, ["branch", "merge", "patch"]);
    await assert.rejects(client.get("nope"), (e: ApiError) => e.code === -32001);

    lt.start();
    await until(() => lt.state.kind === "up", 30_000);
    const a = await client.submit("Plan a launch");
    await client.cancel(a.task_id);
    await until(() => lt.book.get(a.task_id)?.state === "canceled", 30_000);
    assert.equal(lt.book.get(a.task_id)!.goal, "Plan a launch");
    const before = events.filter((e) => e.task_id === a.task_id).map((e) => e.data.state);
    assert.deepEqual(before, ["queued", "canceled"]);
    client.close();

    // A restart: another port and instance id. LiveTasks loses the stream, finds the new
    // daemon through daemon.json and resumes after the last event it had.
    stop(dir);
    await until(() => lt.state.kind === "down", 30_000);
    assert.ok(await startDaemon(TIERD, { home: dir, env: process.env }).then((r) => r.ok));
    const second = readDiscovery(path.join(dir, "daemon.json"))!;
    assert.notEqual(second.instanceId, first.instanceId);
    await until(() => lt.state.kind === "up", 30_000);
    const again = await Client.discover({ env });
    const b = await again.submit("Plan a second launch");
    await until(() => lt.book.has(b.task_id), 30_000);
    const ids = events.map((e) => e.id);
    assert.equal(new Set(ids).size, ids.length, `an event came twice: ${ids}`);
    assert.deepEqual(ids, [...ids].sort((x, y) => x - y));
    assert.equal(lt.state.kind === "up" && lt.state.url, second.url);
    again.close();
  } finally {
    lt.stop();
    try {
      stop(dir);
    } catch {
      // already stopped
    }
  }
});
