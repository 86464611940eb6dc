// The task model fed by a real event log (a code task recorded from a daemon on the simulator:
// two streams, an escalation answered by the user, then approval): state, streams, models,
// cost, the tool step running, questions; each event applied once.

import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";

import type { DaemonEvent } from "../src/client/sse";
import { TaskBook, describeStep, formatUsd, streamLine, taskLine } from "../src/client/tasks";

const EVENTS: DaemonEvent[] = JSON.parse(fs.readFileSync(path.join(__dirname, "../../test/fixtures/code-task-events.json"), "utf-8"));
const TASK = EVENTS[0].task_id as string;

function bookWithTask(): TaskBook {
  const book = new TaskBook();
  book.upsert({ id: TASK, goal: "Change greeting", state: "queued", created_at: 1, repo: "/r" });
  return book;
}

test("the recorded code task, event by event", () => {
  const book = bookWithTask();
  const seen: Record<string, string> = {};
  for (const ev of EVENTS) {
    assert.ok(book.apply(ev), `event ${ev.id} applied`);
    const task = book.get(TASK)!;
    if (ev.type === "tool.step" && ev.data.tool === "edit_file" && ev.data.ok) {
      seen.step = streamLine(task.streams.get("greeting")!);
    }
    if (ev.type === "attention" && ev.data.kind === "questions") {
      seen.questions = taskLine(task);
      assert.deepEqual([...task.questions.values()], [
        { id: ev.data.questions[0].id, streamId: "greeting", question: "Which greeting word should greet use?" },
      ]);
      assert.deepEqual(book.waiting().map((t) => t.id), [TASK]);
    }
  }
  assert.match(seen.step, /^running · gpt-5-mini · \$0\.\d{4} · ▸ edit_file greet\.py$/);
  assert.equal(seen.questions, "input required · " + seen.questions.split(" · ")[1] + " · 1 question");

  const task = book.get(TASK)!;
  assert.equal(task.state, "awaiting_approval");
  assert.equal(task.questions.size, 0); // answered
  assert.deepEqual(task.attention, { kind: "approval", reason: "result awaits approval" });
  assert.equal(task.revision, 0);
  assert.deepEqual([...task.streams.keys()], ["tests", "greeting"]);
  const greeting = task.streams.get("greeting")!;
  assert.equal(greeting.state, "accepted");
  assert.equal(greeting.model, "openai/gpt-5-mini"); // the executor's, not the reviewer's
  assert.equal(greeting.rounds, 2);
  assert.equal(greeting.title, "Greeting");
  const calls = EVENTS.filter((e) => e.type === "model.call");
  const total = calls.reduce((sum, e) => sum + e.data.cost_usd, 0);
  assert.ok(Math.abs(task.costUsd - total) < 1e-12);
  assert.equal(task.calls, calls.length);
  const ofGreeting = calls.filter((e) => e.data.stream_id === "greeting").reduce((s, e) => s + e.data.cost_usd, 0);
  assert.ok(Math.abs(greeting.costUsd - ofGreeting) < 1e-12);
  assert.equal(streamLine(greeting), `accepted · gpt-5-mini · ${formatUsd(ofGreeting)} · accept`);
  assert.equal(task.lastEventId, EVENTS[EVENTS.length - 1].id);
  assert.deepEqual(book.working(), []);
});

test("an event is applied once; events of no task or an unknown task change nothing", () => {
  const book = bookWithTask();
  for (const ev of EVENTS) {
    book.apply(ev);
  }
  const cost = book.get(TASK)!.costUsd;
  for (const ev of EVENTS) {
    assert.equal(book.apply(ev), null);
  }
  assert.equal(book.get(TASK)!.costUsd, cost);
  assert.equal(book.apply({ id: 999, task_id: null, type: "governor.limit", data: {}, created_at: 0 }), null);
  assert.equal(book.apply({ id: 999, task_id: "other", type: "task.state", data: { state: "failed" }, created_at: 0 }), null);
});

test("a summary sets the state only until events have been applied", () => {
  const book = bookWithTask();
  book.upsert({
    id: TASK,
    goal: "G",
    state: "input_required",
    questions: [
      { id: "q1", stream_id: "s", question: "Which?", answer: null },
      { id: "q0", stream_id: "s", question: "Done?", answer: "yes" },
    ],
    streams: [{ id: "s", title: "S", state: "waiting", parent: null }],
  });
  const task = book.get(TASK)!;
  assert.equal(task.state, "input_required");
  assert.deepEqual([...task.questions.keys()], ["q1"]);
  assert.equal(task.streams.get("s")!.state, "waiting");
  book.apply({ id: 50, task_id: TASK, type: "task.state", data: { state: "running" }, created_at: 0 });
  book.upsert({ id: TASK, goal: "G", state: "input_required" }); // an older answer
  assert.equal(task.state, "running");
});

test("tool steps, splits and failures in a few words", () => {
  assert.equal(describeStep({ tool: "run_command", command: "pytest -q", exit_code: 1 }), "run_command pytest -q (exit 1)");
  assert.equal(describeStep({ tool: "finish" }), "finish");
  const book = bookWithTask();
  let id = 1;
  const ev = (type: string, data: Record<string, unknown>): void => {
    book.apply({ id: id++, task_id: TASK, type, data, created_at: 0 });
  };
  ev("stream.state", { stream_id: "a", state: "running", model: "x/m" });
  ev("stream.split", { stream_id: "a", into: ["a.1", "a.2"], accepted: true });
  ev("stream.split", { stream_id: "a", into: ["a.3"], accepted: false });
  ev("tool.step", { stream_id: "a.1", tool: "run_command", command: "make", exit_code: 2, ok: false });
  ev("task.state", { state: "failed", reason: "all streams failed" });
  const task = book.get(TASK)!;
  assert.deepEqual([...task.streams.keys()], ["a", "a.1", "a.2"]);
  assert.equal(task.streams.get("a.1")!.parent, "a");
  assert.equal(task.streams.get("a.1")!.step, "run_command make (exit 2)");
  assert.equal(task.error, "all streams failed");
  assert.equal(formatUsd(0), "$0");
  assert.equal(formatUsd(1.5), "$1.50");
});
