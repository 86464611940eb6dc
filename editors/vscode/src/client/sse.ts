// Server-Sent Events from the daemon: a text/event-stream parser (as the HTML standard says),
// a one-shot replay of a task's stored events, and a follower that reconnects with
// Last-Event-ID so every event is seen exactly once across drops and daemon restarts.
// No `vscode` import here.

import * as http from "node:http";

import { Client, httpError } from "./client";
import { DaemonNotRunning } from "./discovery";

export interface SseMessage {
  id: string | null;
  event: string;
  data: string;
}

/** One daemon event as the API shows it (daemon/store/events.py `event_to_dict`). */
export interface DaemonEvent {
  id: number;
  task_id: string | null;
  type: string;
  data: Record<string, any>;
  created_at: number;
}

/** Parses text/event-stream text, in chunks cut anywhere, into messages. */
export class SseParser {
  /** The last event id seen (the stream's "last event ID buffer"); null before any. */
  lastEventId: string | null = null;
  /** The server's reconnection time (`retry:`), in milliseconds; null when it sent none. */
  retryMs: number | null = null;
  private buffer = "";
  private pendingCr = false;
  private started = false;
  private data: string[] = [];
  private event = "";

  constructor(private readonly onMessage: (msg: SseMessage) => void) {}

  push(text: string): void {
    let chunk = (this.pendingCr ? "\r" : "") + text;
    if (!this.started && chunk.length) {
      this.started = true;
      if (chunk.charCodeAt(0) === 0xfeff) {
        chunk = chunk.slice(1); // a byte order mark is dropped at the stream's start
      }
    }
    // A chunk may end between the two characters of "\r\n": keep the "\r" for the next one.
    this.pendingCr = chunk.endsWith("\r");
    if (this.pendingCr) {
      chunk = chunk.slice(0, -1);
    }
    this.buffer += chunk;
    const lines = this.buffer.split(/\r\n|\r|\n/);
    this.buffer = lines.pop() ?? "";
    for (const line of lines) {
      this.line(line);
    }
  }

  private line(line: string): void {
    if (line === "") {
      if (this.data.length) {
        this.onMessage({ id: this.lastEventId, event: this.event || "message", data: this.data.join("\n") });
      }
      this.data = [];
      this.event = "";
      return;
    }
    if (line.startsWith(":")) {
      return; // a comment: keep-alive pings
    }
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) {
      value = value.slice(1);
    }
    if (field === "data") {
      this.data.push(value);
    } else if (field === "event") {
      this.event = value;
    } else if (field === "id") {
      if (!value.includes("\0")) {
        this.lastEventId = value;
      }
    } else if (field === "retry") {
      if (/^\d+$/.test(value)) {
        this.retryMs = Number(value);
      }
    }
  }
}

/** The event in an SSE message's data, or null when it is not one of the daemon's. */
export function parseEvent(msg: SseMessage): DaemonEvent | null {
  let ev: unknown;
  try {
    ev = JSON.parse(msg.data);
  } catch {
    return null;
  }
  if (ev === null || typeof ev !== "object" || Array.isArray(ev)) {
    return null;
  }
  const e = ev as DaemonEvent;
  if (typeof e.id !== "number" || typeof e.type !== "string") {
    return null;
  }
  if (e.data === null || typeof e.data !== "object") {
    e.data = {};
  }
  return e;
}

export function eventsPath(taskId: string | null, follow = true): string {
  if (taskId === null) {
    return "/v1/events";
  }
  return `/v1/tasks/${encodeURIComponent(taskId)}/events` + (follow ? "" : "?follow=false");
}

export interface StreamHandle {
  /** Resolves when the stream ends (the server closed it), rejects on an error. */
  done: Promise<void>;
  close(): void;
}

/**
 * Open one event stream and hand each event to `onEvent` until it ends. `idleMs` bounds the
 * wait for the next byte (the daemon pings every 10 s): past it the stream fails, so a
 * follower reconnects instead of waiting on a dead connection for ever.
 */
export function openStream(
  client: Client,
  path: string,
  lastEventId: number | null,
  onEvent: (ev: DaemonEvent) => void,
  opts: { idleMs?: number; onRetry?: (ms: number) => void } = {},
): StreamHandle {
  const headers: Record<string, string> = {
    ...client.authHeaders(),
    Accept: "text/event-stream",
    "Cache-Control": "no-cache",
  };
  if (lastEventId !== null) {
    headers["Last-Event-ID"] = String(lastEventId);
  }
  let req: http.ClientRequest | null = null;
  let closed = false;
  let failure: Error | null = null;
  const done = new Promise<void>((resolve, reject) => {
    req = http.request(
      { host: client.host, port: client.port, method: "GET", path, headers, agent: false },
      (res) => {
        if (res.statusCode !== 200) {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => {
            const err = httpError(res.statusCode ?? 0, Buffer.concat(chunks));
            const after = Number(res.headers["retry-after"]);
            reject(Object.assign(err, { retryAfterMs: Number.isFinite(after) ? after * 1000 : null }));
          });
          return;
        }
        res.setEncoding("utf-8");
        const parser = new SseParser((msg) => {
          const ev = parseEvent(msg);
          if (ev !== null) {
            onEvent(ev);
          }
          if (parser.retryMs !== null && opts.onRetry) {
            opts.onRetry(parser.retryMs);
          }
        });
        res.on("data", (text: string) => {
          try {
            parser.push(text);
          } catch (err) {
            failure = err as Error;
            req?.destroy(failure);
          }
        });
        res.on("error", () => undefined); // told by "close" below, with the reason kept
        res.on("close", () => {
          if (closed || res.complete) {
            resolve(); // the server ended the stream (a task's, once the task has ended)
          } else {
            reject(failure ?? new DaemonNotRunning(`the event stream of ${client.url} broke`));
          }
        });
      },
    );
    const idleMs = opts.idleMs ?? 35_000;
    req.setTimeout(idleMs, () => {
      failure = new DaemonNotRunning(`no event or ping from ${client.url} in ${idleMs / 1000}s`);
      req?.destroy(failure);
    });
    req.on("error", (err: NodeJS.ErrnoException) => {
      if (closed) {
        resolve();
      } else if (err instanceof DaemonNotRunning) {
        reject(err);
      } else {
        reject(new DaemonNotRunning(`the event stream of ${client.url} broke: ${err.code || err.message}`));
      }
    });
    req.end();
  });
  return {
    done,
    close() {
      closed = true;
      req?.destroy();
    },
  };
}

/** A task's stored events after `after`, then the end: `?follow=false`. */
export async function replay(client: Client, taskId: string, after: number | null = null): Promise<DaemonEvent[]> {
  const events: DaemonEvent[] = [];
  await openStream(client, eventsPath(taskId, false), after, (ev) => events.push(ev)).done;
  return events;
}

export interface FollowerOptions {
  /** The client to use now: called before every (re)connection (it may re-discover). */
  connect: () => Promise<Client>;
  /** Each event, exactly once, in order. */
  onEvent: (ev: DaemonEvent) => void;
  /** Connected (true) or lost (false, with the reason): for a status line. */
  onState?: (up: boolean, reason?: string) => void;
  /** Backoff bounds in milliseconds. */
  minDelayMs?: number;
  maxDelayMs?: number;
  idleMs?: number;
}

/**
 * Follows `/v1/events` (all tasks) or one task's events for ever: when the stream drops it
 * waits (the server's `retry:`, a 429's Retry-After, or a backoff doubling up to the bound),
 * gets a client again and resumes with Last-Event-ID = the last event it delivered.
 */
export class EventFollower {
  lastId: number | null;
  private stopped = false;
  private current: StreamHandle | null = null;
  private wake: (() => void) | null = null;
  private serverRetryMs: number | null = null;
  /** Resolves once the loop has ended (after `stop`, or when a task's stream ends). */
  readonly finished: Promise<void>;

  constructor(
    private readonly taskId: string | null,
    after: number | null,
    private readonly opts: FollowerOptions,
  ) {
    this.lastId = after;
    this.finished = this.loop();
  }

  stop(): void {
    this.stopped = true;
    this.current?.close();
    this.wake?.();
  }

  private async loop(): Promise<void> {
    const min = this.opts.minDelayMs ?? 500;
    const max = this.opts.maxDelayMs ?? 10_000;
    let delay = min;
    while (!this.stopped) {
      let waitMs = delay;
      try {
        const client = await this.opts.connect();
        if (this.stopped) {
          return;
        }
        this.current = openStream(
          client,
          eventsPath(this.taskId),
          this.lastId,
          (ev) => {
            if (this.lastId !== null && ev.id <= this.lastId) {
              return; // already delivered
            }
            this.lastId = ev.id;
            delay = min; // events flow: the next drop starts the backoff again
            this.opts.onEvent(ev);
          },
          { idleMs: this.opts.idleMs, onRetry: (ms) => (this.serverRetryMs = ms) },
        );
        this.opts.onState?.(true);
        await this.current.done;
        if (this.taskId !== null) {
          return; // a task's stream ends once the task has ended
        }
        waitMs = this.serverRetryMs ?? min;
        this.opts.onState?.(false, "the event stream ended");
      } catch (err) {
        const e = err as Error & { retryAfterMs?: number | null };
        this.opts.onState?.(false, e.message);
        waitMs = e.retryAfterMs ?? this.serverRetryMs ?? delay;
        delay = Math.min(max, delay * 2);
      } finally {
        this.current = null;
      }
      if (!this.stopped) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, waitMs);
          this.wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.wake = null;
      }
    }
  }
}
