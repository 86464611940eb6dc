// LiveTasks against a fake daemon: start-up (the newest tasks, the events of live ones, the
// stream from the newest id), a notification only for attention that arrives live, a task
// first seen in the stream, the counts, and "down" with a retry when no daemon answers.

import assert from "node:assert/strict";
import * as http from "node:http";
import { test } from "node:test";

import { Client } from "../src/client/client";
import { DaemonNotRunning } from "../src/client/discovery";
import { LiveTasks } from "../src/client/live";
import type { DaemonEvent } from "../src/client/sse";
import type { TaskView } from "../src/client/tasks";
import { TOKEN, fakeDaemon, rpcAnswer, sendEvent, sse, until } from "./helpers";

interface Ev {
  id: number;
  task_id: string;
  type: string;
  data: Record<string, unknown>;
}

test("start-up, live events, attention, a new task and the counts", async () => {
  const tasks: Record<string, Record<string, unknown>> = {
    told: { id: "told", goal: "Asked before we came", state: "input_required", created_at: 2, updated_at: 2 },
    old: { id: "old", goal: "Done long ago", state: "completed", created_at: 1, updated_at: 1 },
  };
  const stored: Ev[] = [
    { id: 1, task_id: "old", type: "task.state", data: { state: "completed" } },
    { id: 2, task_id: "told", type: "task.state", data: { state: "queued" } },
    { id: 3, task_id: "told", type: "question", data: { question_id: "q1", stream_id: "s", question: "Which?" } },
    { id: 4, task_id: "told", type: "task.state", data: { state: "input_required" } },
    { id: 5, task_id: "told", type: "attention", data: { kind: "questions", reason: "1 question", questions: [] } },
  ];
  let live: http.ServerResponse | null = null;
  const d = await fakeDaemon((req, res, body) => {
    const url = new URL(req.url ?? "/", "http://x");
    if (url.pathname === "/rpc") {
      rpcAnswer(res, body, (method, params) => {
        if (method === "task/list") {
          const want: string[] | null = params.state ? [params.state].flat() : null;
          return { tasks: Object.values(tasks).filter((t) => !want || want.includes(String(t.state))), next_cursor: null };
        }
        if (method === "task/get") {
          return tasks[params.task_id];
        }
        throw { code: -32601, message: "no such method" };
      });
      return;
    }
    sse(res);
    const m = url.pathname.match(/^\/v1\/tasks\/([^/]+)\/events$/);
    const after = Number(req.headers["last-event-id"] ?? 0);
    if (m) {
      for (const ev of stored.filter((e) => e.task_id === m[1] && e.id > after)) {
        sendEvent(res, ev);
      }
      res.end();
    } else {
      live = res; // /v1/events: the test sends on it
    }
  });
  const lt = new LiveTasks({ discover: async () => new Client(d.url, TOKEN), countsDelayMs: 10 });
  const attention: Array<[string, string]> = [];
  lt.on("attention", (t: TaskView, ev: DaemonEvent) => attention.push([t.id, String(ev.data.kind)]));
  try {
    lt.start();
    await until(() => lt.state.kind === "up" && live !== null);
    // The live task's events were replayed (its question is known), the ended one's not; the
    // newest task's last event (5) is where the stream starts.
    const told = lt.book.get("told")!;
    assert.deepEqual([...told.questions.keys()], ["q1"]);
    assert.equal(told.eventsRead, true);
    assert.equal(lt.book.get("old")!.eventsRead, false);
    const follow = d.seen.find((s) => s.url === "/v1/events")!;
    assert.equal(follow.headers["last-event-id"], "5");
    assert.ok(!d.seen.some((s) => s.url.startsWith("/v1/tasks/old/")));
    assert.deepEqual(lt.counts, { working: 0, waiting: 1 });
    assert.deepEqual(attention, []); // replayed attention is not news

    // Live: the question is answered, then approval is asked.
    tasks.told.state = "awaiting_approval";
    sendEvent(live!, { id: 6, task_id: "told", type: "task.answered", data: { questions: ["q1"] } });
    sendEvent(live!, { id: 7, task_id: "told", type: "task.state", data: { state: "awaiting_approval" } });
    sendEvent(live!, { id: 8, task_id: "told", type: "attention", data: { kind: "approval", reason: "ready", revision: 0 } });
    await until(() => attention.length === 1);
    assert.deepEqual(attention, [["told", "approval"]]);
    assert.equal(told.state, "awaiting_approval");
    assert.equal(told.questions.size, 0);

    // A task submitted elsewhere: first seen in the stream, fetched, its events replayed.
    tasks.fresh = { id: "fresh", goal: "New one", state: "running", created_at: 3, updated_at: 3 };
    stored.push({ id: 9, task_id: "fresh", type: "task.state", data: { state: "queued" } });
    stored.push({ id: 10, task_id: "fresh", type: "task.state", data: { state: "running" } });
    sendEvent(live!, { id: 9, task_id: "fresh", type: "task.state", data: { state: "queued" } });
    sendEvent(live!, { id: 10, task_id: "fresh", type: "task.state", data: { state: "running" } });
    // Its state comes with the fetched view, its last event id once the replay is read.
    await until(
      () =>
        lt.book.get("fresh")?.state === "running" &&
        lt.counts.working === 1 &&
        lt.book.get("fresh")?.lastEventId === 10,
    );
    assert.deepEqual(lt.book.all().map((t) => t.id), ["fresh", "told", "old"]);
    assert.equal(lt.book.get("fresh")!.lastEventId, 10);

    // Deleted: gone from the book.
    sendEvent(live!, { id: 11, task_id: "old", type: "task.deleted", data: {} });
    await until(() => !lt.book.has("old"));

    // An ended task's events are read when it is opened.
    tasks.old2 = { id: "old2", goal: "x", state: "completed", created_at: 0 };
    lt.book.upsert(tasks.old2);
    stored.push({ id: 12, task_id: "old2", type: "stream.state", data: { stream_id: "s1", state: "accepted", model: "m" } });
    await lt.readEvents("old2");
    assert.equal(lt.book.get("old2")!.streams.get("s1")!.state, "accepted");
  } finally {
    lt.stop();
    await d.close();
  }
});

test("no daemon: down with the reason, found again once one answers", async () => {
  let answer = false;
  const d = await fakeDaemon((req, res, body) => {
    if (req.url === "/rpc") {
      rpcAnswer(res, body, () => ({ tasks: [], next_cursor: null }));
    } else {
      sse(res);
    }
  });
  const states: string[] = [];
  const lt = new LiveTasks({
    discover: async () => {
      if (!answer) {
        throw new DaemonNotRunning("no /h/daemon.json");
      }
      return new Client(d.url, TOKEN);
    },
    retryMs: 50,
  });
  lt.on("state", (s) => states.push(s.kind));
  try {
    lt.start();
    await until(() => lt.state.kind === "down");
    assert.equal(lt.state.kind === "down" && lt.state.reason, "no tierd daemon is running for this home (no /h/daemon.json)");
    await assert.rejects(lt.current(), DaemonNotRunning);
    answer = true;
    await until(() => lt.state.kind === "up");
    // Nothing was ever stored: the stream starts at the beginning.
    await until(() => d.seen.some((s) => s.url === "/v1/events"));
    assert.equal(d.seen.find((s) => s.url === "/v1/events")!.headers["last-event-id"], undefined);
    assert.ok(states.includes("down") && states[states.length - 1] === "up");
  } finally {
    lt.stop();
    await d.close();
  }
});
