// A task's live events (Server-Sent Events) and what they add up to.
//
// Read with fetch rather than EventSource, because every request of the page carries the
// session's page key in a header, and EventSource cannot send one. The stream is parsed as
// the HTML standard says; when it drops, it is opened again with Last-Event-ID, so the
// daemon resumes right after the last event seen and every event is applied once.

import { sessionHeaders, taskPath } from "./api.js";

/** Parse text/event-stream chunks into {id, event, data} messages. */
class SseParser {
  constructor(onMessage) {
    this.onMessage = onMessage;
    this.buffer = "";
    this.pendingCr = false;
    this.reset();
  }

  reset() {
    this.data = [];
    this.event = "message";
    this.id = null;
  }

  push(text) {
    let chunk = (this.pendingCr ? "\r" : "") + text;
    // A chunk may end between the two characters of "\r\n": keep the "\r" for the next one.
    this.pendingCr = chunk.endsWith("\r");
    if (this.pendingCr) chunk = chunk.slice(0, -1);
    this.buffer += chunk;
    const lines = this.buffer.split(/\r\n|\r|\n/);
    this.buffer = lines.pop();
    for (const line of lines) this.line(line);
  }

  line(line) {
    if (line === "") {
      if (this.data.length) this.onMessage({ id: this.id, event: this.event, data: this.data.join("\n") });
      this.reset();
      return;
    }
    if (line.startsWith(":")) return; // a keep-alive comment
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "data") this.data.push(value);
    else if (field === "event") this.event = value;
    else if (field === "id") this.id = value;
  }
}

const FINAL_STATES = new Set(["completed", "failed", "canceled"]);

export class EventFollower {
  constructor(taskId, onEvent, onStatus = () => {}) {
    this.taskId = taskId;
    this.onEvent = onEvent;
    this.onStatus = onStatus;
    this.lastId = 0;
    this.failures = 0;
    this.closed = false;
    this.ended = false;
    this.abort = null;
    this.timer = null;
    this.run();
  }

  async run() {
    while (!this.closed) {
      this.abort = new AbortController();
      try {
        const headers = { accept: "text/event-stream", ...sessionHeaders() };
        if (this.lastId) headers["last-event-id"] = String(this.lastId);
        const response = await fetch(`${taskPath(this.taskId)}/events`, {
          headers, cache: "no-store", signal: this.abort.signal,
        });
        if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
        this.failures = 0;
        this.onStatus("live");
        const parser = new SseParser((m) => this.receive(m));
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          parser.push(value);
        }
        // The daemon closes a finished task's stream once it has replayed it: nothing more
        // will come, so do not reconnect.
        if (this.ended) {
          this.onStatus("ended");
          return;
        }
      } catch {
        // Dropped, refused or closed: try again below, unless closed on purpose.
      }
      if (this.closed) return;
      this.onStatus("reconnecting");
      this.failures += 1;
      const wait = Math.min(10000, 250 * 2 ** Math.min(this.failures, 6));
      await new Promise((resolve) => {
        this.timer = setTimeout(resolve, wait);
      });
    }
  }

  receive(message) {
    const id = Number(message.id);
    if (id && id <= this.lastId) return; // seen already
    if (id) this.lastId = id;
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      return;
    }
    if (event.type === "task.state" && FINAL_STATES.has(event.data?.state)) this.ended = true;
    this.onEvent(event);
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.abort) this.abort.abort();
  }
}

/**
 * What the events say beyond `task/get`: per stream its model, calls, tokens and cost, and
 * its verdicts round by round; the orchestration's own calls; the approval revision.
 */
export class TaskTotals {
  constructor() {
    this.streams = new Map();
    this.orchestration = { calls: 0, tokens: 0, cost: 0 };
    this.revision = null;
    this.lastState = null;
    this.lastStateId = 0;
  }

  stream(id) {
    if (!this.streams.has(id)) {
      this.streams.set(id, {
        model: null, calls: 0, tokens: 0, cost: 0, verdicts: [], state: null, stateId: 0,
      });
    }
    return this.streams.get(id);
  }

  apply(event) {
    const d = event.data || {};
    switch (event.type) {
      case "model.call": {
        const into = d.stream_id ? this.stream(d.stream_id) : this.orchestration;
        into.calls += 1;
        into.tokens += (d.prompt_tokens || 0) + (d.completion_tokens || 0);
        into.cost += d.cost_usd || 0;
        if (d.stream_id && d.role === "executor" && d.model) into.model = d.model;
        break;
      }
      case "stream.state": {
        const st = this.stream(d.stream_id);
        st.state = d.state;
        st.stateId = event.id;
        if (d.model) st.model = d.model;
        break;
      }
      case "review.verdict":
        this.stream(d.stream_id).verdicts.push({ round: d.round, verdict: d.verdict, reason: d.reason });
        break;
      case "attention":
        if (d.kind === "approval") this.revision = d.revision ?? 0;
        break;
      case "task.state":
        this.lastState = d.state;
        this.lastStateId = event.id;
        break;
      default:
        break;
    }
  }
}

/**
 * Replay a task's events once, up to the present, then stop: resolves with the totals.
 * "The present" is when the stream has been quiet for `quietMs` (a task waiting for a human
 * sends nothing). One replay at a time: browsers allow few connections per host.
 */
let replayQueue = Promise.resolve();

export function replayTotals(taskId, { quietMs = 250, maxMs = 4000 } = {}) {
  const run = () =>
    new Promise((resolve) => {
      const totals = new TaskTotals();
      let quiet = null;
      const finish = () => {
        clearTimeout(quiet);
        clearTimeout(limit);
        follower.close();
        resolve(totals);
      };
      const limit = setTimeout(finish, maxMs);
      const follower = new EventFollower(
        taskId,
        (event) => {
          totals.apply(event);
          clearTimeout(quiet);
          quiet = setTimeout(finish, quietMs);
        },
        (status) => {
          // A task with no events at all: done once the stream is open and stays quiet.
          if (status === "live" && quiet === null) quiet = setTimeout(finish, quietMs * 2);
        },
      );
    });
  const next = replayQueue.then(run, run);
  replayQueue = next.catch(() => {});
  return next;
}
