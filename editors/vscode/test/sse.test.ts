// Server-Sent Events: the parser on chunks cut anywhere, and the follower across drops (each
// event once, resumed with Last-Event-ID), 429s (Retry-After) and a silent server.

import assert from "node:assert/strict";
import { test } from "node:test";

import { Client } from "../src/client/client";
import { DaemonEvent, EventFollower, SseMessage, SseParser, replay } from "../src/client/sse";
import { TOKEN, fakeDaemon, json, sendEvent, sse, until } from "./helpers";

const STREAM =
  "\ufeff: ping\r\n\r\nid: 1\r\nevent: task.state\r\ndata: {\"a\":\r\ndata:  1}\r\n\r\n" +
  "retry: 2500\nid: 2\ndata:x\n\n" +
  "event: ignored-without-data\nid: 3\n\n" +
  "id: bad\0id\ndata: y\rdata\r\r" +
  "data: tail\n\n";

function parseAll(chunks: string[]): { msgs: SseMessage[]; parser: SseParser } {
  const msgs: SseMessage[] = [];
  const parser = new SseParser((m) => msgs.push(m));
  for (const c of chunks) {
    parser.push(c);
  }
  return { msgs, parser };
}

test("the parser reads events as the HTML standard says", () => {
  const { msgs, parser } = parseAll([STREAM]);
  assert.deepEqual(msgs, [
    { id: "1", event: "task.state", data: '{"a":\n 1}' },
    { id: "2", event: "message", data: "x" },
    { id: "3", event: "message", data: "y\n" }, // an id with NUL is ignored; "data" alone adds ""
    { id: "3", event: "message", data: "tail" },
  ]);
  assert.equal(parser.retryMs, 2500);
  assert.equal(parser.lastEventId, "3");
});

test("the parser gives the same events however the stream is cut", () => {
  const whole = parseAll([STREAM]).msgs;
  for (let i = 0; i <= STREAM.length; i++) {
    for (const j of [i, Math.min(STREAM.length, i + 1), Math.min(STREAM.length, i + 7)]) {
      const { msgs } = parseAll([STREAM.slice(0, i), STREAM.slice(i, j), STREAM.slice(j)]);
      assert.deepEqual(msgs, whole, `cut at ${i} and ${j}`);
    }
  }
  // One character at a time.
  assert.deepEqual(parseAll([...STREAM]).msgs, whole);
});

test("a follower resumes with Last-Event-ID after a drop and applies every event once", async () => {
  const lastIds: Array<string | undefined> = [];
  let connection = 0;
  const d = await fakeDaemon((req, res) => {
    connection += 1;
    lastIds.push(req.headers["last-event-id"] as string | undefined);
    sse(res);
    if (connection === 1) {
      for (const id of [1, 2, 3]) {
        sendEvent(res, { id, type: "task.state", task_id: "t1" });
      }
      setTimeout(() => res.socket?.destroy(), 50); // the connection breaks mid-stream
    } else if (connection === 2) {
      for (const id of [3, 4, 5]) {
        sendEvent(res, { id, type: "task.state", task_id: "t1" }); // 3 again: already seen
      }
      res.end(); // the server ends the stream: the global follower comes back
    } else {
      sendEvent(res, { id: 6, type: "attention", task_id: "t1" });
    }
  });
  const client = new Client(d.url, TOKEN);
  const got: DaemonEvent[] = [];
  const states: string[] = [];
  const f = new EventFollower(null, null, {
    connect: async () => client,
    onEvent: (ev) => got.push(ev),
    onState: (up) => states.push(up ? "up" : "down"),
    minDelayMs: 20,
  });
  try {
    await until(() => got.length === 6);
    assert.deepEqual(got.map((e) => e.id), [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(lastIds, [undefined, "3", "5"]);
    assert.equal(d.seen[0].url, "/v1/events");
    assert.equal(d.seen[0].headers.accept, "text/event-stream");
    assert.equal(d.seen[0].headers.authorization, `Bearer ${TOKEN}`);
    assert.deepEqual(states.slice(0, 4), ["up", "down", "up", "down"]);
  } finally {
    f.stop();
    await f.finished;
    client.close();
    await d.close();
  }
});

test("a follower waits as a 429 says, and gives up on a silent server after idleMs", async () => {
  const times: number[] = [];
  const d = await fakeDaemon((_req, res) => {
    times.push(Date.now());
    if (times.length === 1) {
      res.setHeader("Retry-After", "0.3");
      json(res, 429, { error: { code: -32005, message: "too many open event streams", data: { retry_after_s: 0.3 } } });
    } else if (times.length === 2) {
      sse(res); // open, then silent: no event, no ping
    } else {
      sse(res);
      sendEvent(res, { id: 9, type: "task.state", task_id: "t" });
    }
  });
  const client = new Client(d.url, TOKEN);
  const got: number[] = [];
  const reasons: string[] = [];
  const f = new EventFollower(null, 8, {
    connect: async () => client,
    onEvent: (ev) => got.push(ev.id),
    onState: (up, why) => !up && reasons.push(String(why)),
    minDelayMs: 10,
    idleMs: 300,
  });
  try {
    await until(() => got.length === 1);
    assert.ok(times[1] - times[0] >= 280, `retried after ${times[1] - times[0]} ms`);
    assert.ok(times[2] - times[1] >= 280, `gave up on silence after ${times[2] - times[1]} ms`);
    assert.match(reasons[0], /too many open event streams/);
    assert.match(reasons[1], /no event or ping from .* in 0\.3s/);
    assert.deepEqual(d.seen.map((s) => s.headers["last-event-id"]), ["8", "8", "8"]);
  } finally {
    f.stop();
    await f.finished;
    client.close();
    await d.close();
  }
});

test("replay reads a task's stored events with follow=false and ends with the stream", async () => {
  const d = await fakeDaemon((_req, res) => {
    sse(res);
    sendEvent(res, { id: 11, type: "task.state", task_id: "t/1" });
    sendEvent(res, { id: 12, type: "stream.state", task_id: "t/1" });
    res.end();
  });
  const client = new Client(d.url, TOKEN);
  try {
    const evs = await replay(client, "t/1", 10);
    assert.deepEqual(evs.map((e) => [e.id, e.type]), [[11, "task.state"], [12, "stream.state"]]);
    assert.equal(d.seen[0].url, "/v1/tasks/t%2F1/events?follow=false");
    assert.equal(d.seen[0].headers["last-event-id"], "10");
  } finally {
    client.close();
    await d.close();
  }
});
