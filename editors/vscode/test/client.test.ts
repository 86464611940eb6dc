// The client against a tiny in-test HTTP server playing the daemon: discovery with the
// identity check (no token before it passes), JSON-RPC answers and errors, the retried
// submit with one idempotency key, the login link, and task/approve's apply choices.

import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";

import { ApiError, Client, applyChoices } from "../src/client/client";
import { DaemonNotRunning } from "../src/client/discovery";
import { INSTANCE, TOKEN, fakeDaemon, homeFor, json, rpcAnswer, tmpDir } from "./helpers";

function authOf(h: { authorization?: string }): string | undefined {
  return h.authorization;
}

test("discover verifies /healthz without the token, then sends the token to the daemon", async () => {
  const d = await fakeDaemon((req, res, body) => {
    if (req.url === "/healthz") {
      json(res, 200, { ok: true, instance_id: INSTANCE });
    } else {
      rpcAnswer(res, body, (method) => ({ method }));
    }
  });
  try {
    const client = await Client.discover({ home: homeFor(d.url) });
    assert.deepEqual(await client.status(), { method: "daemon/status" });
    assert.equal(d.seen[0].url, "/healthz");
    assert.equal(authOf(d.seen[0].headers), undefined);
    assert.equal(authOf(d.seen[1].headers), `Bearer ${TOKEN}`);
    assert.equal(client.daemonVersion, "0.1.0");
    client.close();
  } finally {
    await d.close();
  }
});

test("a server that is not the daemon of daemon.json never sees the token", async () => {
  const answers: Array<[number, unknown]> = [
    [200, { ok: true, instance_id: "someone-else" }],
    [200, { ok: true }],
    [401, { error: { code: -32004, message: "unauthorized" } }],
    [200, "not json"],
  ];
  for (const [status, doc] of answers) {
    const d = await fakeDaemon((_req, res) => json(res, status, doc));
    try {
      await assert.rejects(Client.discover({ home: homeFor(d.url) }), (err: Error) => {
        assert.ok(err instanceof DaemonNotRunning);
        assert.match(err.message, /no daemon answering: the server at .* is not the tierd daemon/);
        return true;
      });
      assert.ok(d.seen.length >= 1);
      assert.ok(d.seen.every((s) => authOf(s.headers) === undefined), "the token went out");
    } finally {
      await d.close();
    }
  }
});

test("no daemon: no file, a dead pid, no instance id, nothing listening, not HTTP", async () => {
  const empty = tmpDir();
  await assert.rejects(Client.discover({ home: empty }), /no tierd daemon is running for this home \(no .*daemon\.json\)/);

  const d = await fakeDaemon((_req, res) => json(res, 200, { instance_id: INSTANCE }));
  try {
    await assert.rejects(Client.discover({ home: homeFor(d.url, { pid: 2 ** 31 - 2 }) }), /the daemon with pid \d+ is gone/);
    await assert.rejects(Client.discover({ home: homeFor(d.url, { instance_id: undefined }) }), /no instance id/);
    await assert.rejects(Client.discover({ home: homeFor("https://127.0.0.1:1") }), /must be http:\/\/host:port/);
  } finally {
    await d.close();
  }
  // The port the server had is free now: nothing answers there.
  await assert.rejects(Client.discover({ home: homeFor(d.url) }), /nothing answers at http:\/\/127\.0\.0\.1/);

  const net = await import("node:net");
  const garbage = net.createServer((sock) => sock.end("SSH-2.0-OpenSSH\r\n\r\n"));
  await new Promise<void>((r) => garbage.listen(0, "127.0.0.1", r));
  const port = (garbage.address() as { port: number }).port;
  try {
    await assert.rejects(Client.discover({ home: homeFor(`http://127.0.0.1:${port}`) }), DaemonNotRunning);
  } finally {
    garbage.close();
  }
});

test("the environment's TIERD_HOME is used when no home is set", async () => {
  const d = await fakeDaemon((req, res, body) =>
    req.url === "/healthz" ? json(res, 200, { instance_id: INSTANCE }) : rpcAnswer(res, body, () => 1),
  );
  try {
    const client = await Client.discover({ env: { TIERD_HOME: homeFor(d.url), HOME: "/nonexistent" } });
    assert.equal(client.url, d.url);
    client.close();
  } finally {
    await d.close();
  }
});

test("JSON-RPC errors and HTTP errors become ApiError with the code and data", async () => {
  const d = await fakeDaemon((_req, res, body) => {
    const call = JSON.parse(body || "{}");
    if (call.method === "task/get") {
      json(res, 200, { jsonrpc: "2.0", id: call.id, error: { code: -32001, message: "task not found", data: { task_id: "nope" } } });
    } else if (call.method === "task/approve") {
      json(res, 200, {
        jsonrpc: "2.0",
        id: call.id,
        error: { code: -32002, message: "merge refused", data: { files: ["a.py"] } },
      });
    } else if (call.method === "daemon/status") {
      json(res, 401, { error: { code: -32004, message: "missing or wrong token", data: null } });
    } else {
      res.writeHead(500);
      res.end("boom");
    }
  });
  try {
    const c = new Client(d.url, TOKEN);
    await assert.rejects(c.get("nope"), (e: ApiError) => e.code === -32001 && (e.data as { task_id: string }).task_id === "nope");
    await assert.rejects(c.approve("t1", "approve", { apply: "merge" }), (e: ApiError) => e.code === -32002 && (e.data as { files: string[] }).files[0] === "a.py");
    await assert.rejects(c.status(), (e: ApiError) => e.code === -32004 && e.message === "missing or wrong token");
    await assert.rejects(c.list(), (e: ApiError) => e.code === 500 && e.message === "HTTP 500: boom");
    const sent = JSON.parse(d.seen[1].body);
    assert.deepEqual(sent.params, { task_id: "t1", decision: "approve", apply: "merge" });
    c.close();
  } finally {
    await d.close();
  }
});

test("a submit whose connection drops is sent once more with the same idempotency key", async () => {
  let calls = 0;
  const d = await fakeDaemon((_req, res, body) => {
    calls += 1;
    if (calls === 1) {
      res.socket?.destroy(); // the answer is lost
      return;
    }
    rpcAnswer(res, body, (_m, params) => ({ task_id: "t0001", duplicate: true, key: params.idempotency_key }));
  });
  try {
    const c = new Client(d.url, TOKEN);
    const out = await c.submit("Do it", { repo: "/r", includeUncommitted: true });
    assert.equal(d.seen.length, 2);
    const [first, second] = d.seen.map((s) => JSON.parse(s.body).params);
    assert.equal(first.idempotency_key, second.idempotency_key);
    assert.match(first.idempotency_key, /^[0-9a-f-]{36}$/);
    assert.deepEqual({ ...first, idempotency_key: 0 }, { goal: "Do it", context: "", options: {}, idempotency_key: 0, repo: "/r", include_uncommitted: true });
    assert.equal(out.key, first.idempotency_key);
    c.close();
  } finally {
    await d.close();
  }
});

test("list sends one state as a string and several as a list; the login link is POSTed", async () => {
  const d = await fakeDaemon((req, res, body) => {
    if (req.url === "/v1/dashboard/login-links") {
      json(res, 200, { url: "http://127.0.0.1:9/login/abc", expires_in_s: 60 });
      return;
    }
    rpcAnswer(res, body, () => ({ tasks: [] }));
  });
  try {
    const c = new Client(d.url, TOKEN);
    await c.list({ state: ["running"] });
    await c.list({ state: ["running", "merging"], limit: 7 });
    assert.deepEqual(JSON.parse(d.seen[0].body).params, { limit: 50, state: "running" });
    assert.deepEqual(JSON.parse(d.seen[1].body).params, { limit: 7, state: ["running", "merging"] });
    const link = await c.loginLink();
    assert.equal(link.url, "http://127.0.0.1:9/login/abc");
    assert.equal(d.seen[2].method, "POST");
    assert.equal(authOf(d.seen[2].headers), `Bearer ${TOKEN}`);
    c.close();
  } finally {
    await d.close();
  }
});

test("a daemon that does not answer in time is told apart from one that is gone", async () => {
  const d = await fakeDaemon(() => undefined); // never answers
  try {
    const c = new Client(d.url, TOKEN, { timeoutMs: 200 });
    await assert.rejects(c.status(), /did not answer within 0\.2s/);
    c.close();
  } finally {
    await d.close();
  }
});

test("the apply choices come from rpc/discover's task/approve", () => {
  const doc = JSON.parse(fs.readFileSync(path.join(__dirname, "../../test/fixtures/approve-method.json"), "utf-8"));
  const { choices, description } = applyChoices(doc);
  assert.deepEqual(choices, ["branch", "merge", "patch"]);
  assert.match(description, /leave the result on its branch/);
  const more = JSON.parse(JSON.stringify(doc));
  more.methods[0].params[3].schema.anyOf[0].enum.push("pull-request");
  assert.deepEqual(applyChoices(more).choices, ["branch", "merge", "patch", "pull-request"]);
  assert.deepEqual(applyChoices({ methods: [] }).choices, ["branch", "merge", "patch"]);
  assert.deepEqual(applyChoices(null).choices, ["branch", "merge", "patch"]);
});
