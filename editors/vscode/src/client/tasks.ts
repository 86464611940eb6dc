// What the events say about each task: its state, its streams (state, model, cost, the tool
// step running now), its open questions and what it waits for. Fed by `task/list` / `task/get`
// answers and by the daemon's events (each applied once, in id order). No `vscode` import.

import type { DaemonEvent } from "./sse";
import type { Json } from "./client";

export const TERMINAL_STATES = new Set(["completed", "failed", "canceled"]);
/** States in which a task waits for the user. */
export const HUMAN_STATES = new Set(["input_required", "awaiting_approval"]);
/** States in which a task works (or is about to). */
export const WORKING_STATES = ["queued", "planning", "running", "reviewing", "merging"];

export interface StreamView {
  id: string;
  title: string;
  parent: string | null;
  state: string;
  model: string | null;
  calls: number;
  tokens: number;
  costUsd: number;
  /** The last tool step, e.g. "edit_file greet.py" (code streams). */
  step: string | null;
  stepOk: boolean | null;
  rounds: number;
  verdict: string | null;
}

export interface Question {
  id: string;
  streamId: string | null;
  question: string;
}

export interface TaskView {
  id: string;
  goal: string;
  state: string;
  repo: string | null;
  createdAt: number;
  updatedAt: number;
  error: string | null;
  calls: number;
  costUsd: number;
  streams: Map<string, StreamView>;
  questions: Map<string, Question>;
  /** The last attention event's kind and reason (questions, approval, failed). */
  attention: { kind: string; reason: string } | null;
  revision: number | null;
  /** The id of the last event applied to this task; events up to it are not applied again. */
  lastEventId: number;
  /** Whether the task's events have been read (a replay, or followed since it began). */
  eventsRead: boolean;
}

function newStream(id: string): StreamView {
  return {
    id,
    title: "",
    parent: null,
    state: "pending",
    model: null,
    calls: 0,
    tokens: 0,
    costUsd: 0,
    step: null,
    stepOk: null,
    rounds: 0,
    verdict: null,
  };
}

export function newTask(id: string): TaskView {
  return {
    id,
    goal: "",
    state: "queued",
    repo: null,
    createdAt: 0,
    updatedAt: 0,
    error: null,
    calls: 0,
    costUsd: 0,
    streams: new Map(),
    questions: new Map(),
    attention: null,
    revision: null,
    lastEventId: 0,
    eventsRead: false,
  };
}

/** A tool step in a few words: the tool and what it worked on. */
export function describeStep(data: Json): string {
  const tool = String(data.tool ?? "step");
  const on = data.path ?? data.command ?? "";
  const text = on ? `${tool} ${String(on)}` : tool;
  return data.exit_code !== null && data.exit_code !== undefined ? `${text} (exit ${data.exit_code})` : text;
}

export class TaskBook {
  private readonly byId = new Map<string, TaskView>();

  get(id: string): TaskView | undefined {
    return this.byId.get(id);
  }

  has(id: string): boolean {
    return this.byId.has(id);
  }

  /** Every task, newest first. */
  all(): TaskView[] {
    return [...this.byId.values()].sort((a, b) => b.createdAt - a.createdAt || (a.id < b.id ? 1 : -1));
  }

  /** Tasks that wait for the user, oldest first (the inbox). */
  waiting(): TaskView[] {
    return this.all()
      .filter((t) => HUMAN_STATES.has(t.state))
      .reverse();
  }

  working(): TaskView[] {
    return this.all().filter((t) => WORKING_STATES.includes(t.state));
  }

  remove(id: string): void {
    this.byId.delete(id);
  }

  /**
   * Take a task as `task/list` or `task/get` shows it. Its state is taken only while no event
   * has been applied to it (events are newer than any answer read before them).
   */
  upsert(summary: Json): TaskView {
    const id = String(summary.id);
    const task = this.byId.get(id) ?? newTask(id);
    task.goal = String(summary.goal ?? task.goal);
    task.repo = summary.repo ?? summary.code?.repo ?? task.repo;
    task.createdAt = Number(summary.created_at ?? task.createdAt);
    task.updatedAt = Number(summary.updated_at ?? task.updatedAt);
    if (!task.lastEventId) {
      task.state = String(summary.state ?? task.state);
      task.error = summary.error ?? null;
    }
    if (Array.isArray(summary.questions) && !task.lastEventId) {
      task.questions.clear();
      for (const q of summary.questions) {
        if (q && q.answer === null) {
          task.questions.set(q.id, { id: q.id, streamId: q.stream_id ?? null, question: q.question });
        }
      }
    }
    if (Array.isArray(summary.streams) && !task.lastEventId) {
      for (const s of summary.streams) {
        const line = task.streams.get(s.id) ?? newStream(s.id);
        line.title = s.title ?? line.title;
        line.parent = s.parent ?? null;
        line.state = s.state ?? line.state;
        line.verdict = s.verdict ?? line.verdict;
        line.rounds = s.rounds ?? line.rounds;
        task.streams.set(s.id, line);
      }
    }
    this.byId.set(id, task);
    return task;
  }

  /**
   * Apply one event; returns the task it changed, or null when it changed none (an event of
   * no task, one already applied, or of a task this book does not hold).
   */
  apply(ev: DaemonEvent): TaskView | null {
    if (ev.task_id === null) {
      return null;
    }
    const task = this.byId.get(ev.task_id);
    if (task === undefined || ev.id <= task.lastEventId) {
      return null;
    }
    task.lastEventId = ev.id;
    task.updatedAt = Math.max(task.updatedAt, Number(ev.created_at) || 0);
    const handler = HANDLERS[ev.type];
    if (handler !== undefined) {
      handler(task, ev.data ?? {});
    }
    return task;
  }
}

function stream(task: TaskView, id: string): StreamView {
  let line = task.streams.get(id);
  if (line === undefined) {
    line = newStream(id);
    task.streams.set(id, line);
  }
  return line;
}

const HANDLERS: Record<string, (task: TaskView, data: Json) => void> = {
  "task.state": (task, data) => {
    task.state = String(data.state);
    if (task.state === "failed") {
      task.error = data.reason ?? task.error;
    }
    if (!HUMAN_STATES.has(task.state)) {
      task.attention = null;
    }
  },
  "task.plan": (task, data) => {
    for (const s of data.streams ?? []) {
      stream(task, s.id).title = s.title ?? "";
    }
  },
  "stream.state": (task, data) => {
    const line = stream(task, String(data.stream_id));
    line.parent = data.parent ?? line.parent;
    line.state = String(data.state);
    if (data.model) {
      line.model = data.model;
    }
    line.rounds = data.rounds ?? line.rounds;
    if (data.state === "running") {
      line.verdict = data.verdict ?? null; // "redo" when sent back
      line.step = null;
    } else if (data.verdict) {
      line.verdict = data.verdict;
    }
  },
  "stream.split": (task, data) => {
    if (data.accepted === false) {
      return;
    }
    for (const id of data.into ?? []) {
      stream(task, id).parent = data.stream_id;
    }
  },
  "model.call": (task, data) => {
    const cost = Number(data.cost_usd ?? 0) || 0;
    const tokens = (Number(data.prompt_tokens) || 0) + (Number(data.completion_tokens) || 0);
    task.calls += 1;
    task.costUsd += cost;
    if (data.stream_id && task.streams.has(data.stream_id)) {
      const line = stream(task, data.stream_id);
      line.calls += 1;
      line.tokens += tokens;
      line.costUsd += cost;
      if (data.role === "executor" && data.model) {
        line.model = data.model;
      }
    }
  },
  "review.verdict": (task, data) => {
    const line = task.streams.get(data.stream_id);
    if (line !== undefined && (data.verdict === "redo" || data.verdict === "escalate")) {
      line.verdict = data.verdict;
    }
  },
  question: (task, data) => {
    task.questions.set(data.question_id, {
      id: data.question_id,
      streamId: data.stream_id ?? null,
      question: String(data.question ?? ""),
    });
  },
  "task.answered": (task, data) => {
    for (const id of data.questions ?? []) {
      task.questions.delete(id);
    }
  },
  attention: (task, data) => {
    task.attention = { kind: String(data.kind ?? ""), reason: String(data.reason ?? "") };
    if (data.kind === "approval" && Number.isInteger(data.revision)) {
      task.revision = data.revision;
    }
    for (const q of data.questions ?? []) {
      task.questions.set(q.id, { id: q.id, streamId: q.stream_id ?? null, question: String(q.question ?? "") });
    }
  },
  "tool.step": (task, data) => {
    if (!data.stream_id) {
      return;
    }
    const line = stream(task, data.stream_id);
    line.step = describeStep(data);
    line.stepOk = data.ok ?? null;
  },
  "code.setup": (task, data) => {
    if (data.stream_id) {
      stream(task, data.stream_id).step = "setup" + (data.exit_code !== undefined && data.exit_code !== null ? ` (exit ${data.exit_code})` : "");
    }
  },
};

/** Money as the CLI shows it: $0.0123 below a dollar, $1.23 above. */
export function formatUsd(usd: number): string {
  if (!usd) {
    return "$0";
  }
  return usd < 1 ? `$${usd.toFixed(4)}` : `$${usd.toFixed(2)}`;
}

/** One line about a stream: state, model, cost and the step it runs now. */
export function streamLine(s: StreamView): string {
  const parts = [s.state];
  if (s.model) {
    parts.push(s.model.replace(/^[^/]+\//, ""));
  }
  if (s.costUsd) {
    parts.push(formatUsd(s.costUsd));
  }
  if (s.step && s.state === "running") {
    parts.push(`▸ ${s.step}` + (s.stepOk === false ? " (failed)" : ""));
  }
  if (s.verdict && s.state !== "running") {
    parts.push(s.verdict);
  }
  return parts.join(" · ");
}

/** One line about a task: state and cost. */
export function taskLine(t: TaskView): string {
  const parts = [t.state.replace("_", " ")];
  if (t.costUsd) {
    parts.push(formatUsd(t.costUsd));
  }
  if (t.questions.size && t.state === "input_required") {
    parts.push(`${t.questions.size} question${t.questions.size === 1 ? "" : "s"}`);
  }
  return parts.join(" · ");
}
