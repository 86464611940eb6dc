// The tasks of the daemon, kept live: the connection (discovery, identity check, reconnect),
// the newest tasks and their events, and then every event as it comes over `/v1/events`,
// resumed with Last-Event-ID after a drop or a daemon restart. No `vscode` import: the
// extension listens to the events of this object.
//
// Start-up reads `task/list` (the newest `limit` tasks), replays the events of each task
// that has not ended (`?follow=false`), and follows `/v1/events` from the newest event id
// it has seen, so the stream carries only what is new. Before any task exists the stream
// starts at 0 (there is nothing to replay). Events of a task the book does not hold bring
// it in (`task/get`); an ended task's events are read when it is opened (`readEvents`).

import { EventEmitter } from "node:events";

import { Client } from "./client";
import { DaemonNotRunning } from "./discovery";
import { DaemonEvent, EventFollower, replay } from "./sse";
import { HUMAN_STATES, TaskBook, TaskView, TERMINAL_STATES, WORKING_STATES } from "./tasks";

export interface Counts {
  working: number;
  waiting: number;
}

export type ConnectionState =
  | { kind: "connecting" }
  | { kind: "up"; url: string; version: string | null }
  | { kind: "down"; reason: string };

export interface LiveOptions {
  /** Finds and verifies the daemon (Client.discover with the extension's settings). */
  discover: () => Promise<Client>;
  /** How many of the newest tasks are shown. */
  limit?: number;
  /** Milliseconds between attempts while no daemon answers. */
  retryMs?: number;
  /** Milliseconds the counts wait after a state change before they are read again. */
  countsDelayMs?: number;
  idleMs?: number;
}

/**
 * Events: "state" (ConnectionState), "changed" (TaskView | null: null for the whole list),
 * "counts" (Counts), "attention" (TaskView, DaemonEvent: only events that arrive live, never
 * replayed ones), "event" (DaemonEvent: every event followed live).
 */
export class LiveTasks extends EventEmitter {
  readonly book = new TaskBook();
  state: ConnectionState = { kind: "connecting" };
  counts: Counts = { working: 0, waiting: 0 };
  private client: Client | null = null;
  private follower: EventFollower | null = null;
  private stopped = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private countsTimer: NodeJS.Timeout | null = null;
  private fetching = new Set<string>();
  private readonly limit: number;

  constructor(private readonly opts: LiveOptions) {
    super();
    this.limit = opts.limit ?? 50;
  }

  /** The verified client, or DaemonNotRunning with the reason none answers. */
  async current(): Promise<Client> {
    if (this.client !== null) {
      return this.client;
    }
    try {
      return await this.connectOnce();
    } catch (err) {
      throw err instanceof DaemonNotRunning ? err : new DaemonNotRunning((err as Error).message);
    }
  }

  start(): void {
    this.stopped = false;
    void this.run();
  }

  stop(): void {
    this.stopped = true;
    this.follower?.stop();
    this.follower = null;
    for (const timer of [this.retryTimer, this.countsTimer]) {
      if (timer) {
        clearTimeout(timer);
      }
    }
    this.client?.close();
    this.client = null;
  }

  /** Drop the connection and find the daemon again now (after a start, or on request). */
  restart(): void {
    this.stop();
    this.setState({ kind: "connecting" });
    this.start();
  }

  private setState(state: ConnectionState): void {
    this.state = state;
    this.emit("state", state);
  }

  private async connectOnce(): Promise<Client> {
    const client = await this.opts.discover();
    this.client?.close();
    this.client = client;
    return client;
  }

  private async run(): Promise<void> {
    try {
      const client = await this.connectOnce();
      const after = await this.bootstrap(client);
      if (this.stopped) {
        return;
      }
      this.setState({ kind: "up", url: client.url, version: client.daemonVersion });
      this.follow(after);
    } catch (err) {
      if (this.stopped) {
        return;
      }
      this.client = null;
      this.setState({ kind: "down", reason: (err as Error).message });
      this.retryTimer = setTimeout(() => void this.run(), this.opts.retryMs ?? 3000);
    }
  }

  /** Read the newest tasks and the events of those that have not ended; the newest id seen. */
  private async bootstrap(client: Client): Promise<number> {
    const page = await client.list({ limit: this.limit });
    const tasks: Array<Record<string, unknown>> = page.tasks ?? [];
    for (const summary of tasks) {
      this.book.upsert(summary);
    }
    let newest = 0;
    for (const [i, summary] of tasks.entries()) {
      const task = this.book.get(String(summary.id));
      if (task === undefined) {
        continue;
      }
      // The newest task's events too, ended or not: their last id is where the stream starts.
      if (i === 0 || !TERMINAL_STATES.has(task.state)) {
        newest = Math.max(newest, await this.readEventsWith(client, task));
      }
    }
    this.emit("changed", null);
    await this.refreshCounts(client);
    return newest;
  }

  private async readEventsWith(client: Client, task: TaskView): Promise<number> {
    const events = await replay(client, task.id, task.lastEventId || null);
    for (const ev of events) {
      this.book.apply(ev);
    }
    task.eventsRead = true;
    return events.length ? events[events.length - 1].id : task.lastEventId;
  }

  /** Read a task's stored events (an ended task opened in the tree); emits "changed". */
  async readEvents(taskId: string): Promise<void> {
    const task = this.book.get(taskId);
    if (task === undefined || task.eventsRead) {
      return;
    }
    await this.readEventsWith(await this.current(), task);
    this.emit("changed", task);
  }

  private follow(after: number): void {
    this.follower = new EventFollower(null, after || null, {
      connect: async () => {
        if (this.client === null) {
          await this.connectOnce(); // a daemon restarted on another port, or a new token
        }
        return this.client as Client;
      },
      onEvent: (ev) => this.onEvent(ev),
      onState: (up, reason) => {
        if (up && this.client !== null) {
          this.setState({ kind: "up", url: this.client.url, version: this.client.daemonVersion });
          this.scheduleCounts();
        } else if (!up) {
          this.client?.close();
          this.client = null; // find the daemon again before the next attempt
          this.setState({ kind: "down", reason: reason ?? "the event stream ended" });
        }
      },
      idleMs: this.opts.idleMs,
      maxDelayMs: this.opts.retryMs ?? 3000,
    });
  }

  private onEvent(ev: DaemonEvent): void {
    this.emit("event", ev);
    if (ev.task_id === null) {
      return;
    }
    if (ev.type === "task.deleted") {
      this.book.remove(ev.task_id);
      this.emit("changed", null);
      this.scheduleCounts();
      return;
    }
    if (!this.book.has(ev.task_id)) {
      void this.adopt(ev);
      return;
    }
    const task = this.book.apply(ev);
    if (task === null) {
      return;
    }
    this.emit("changed", task);
    if (ev.type === "task.state") {
      this.scheduleCounts();
    }
    if (ev.type === "attention") {
      this.emit("attention", task, ev);
    }
  }

  /** A task first seen in the stream: its summary, then every event of it from the start. */
  private async adopt(ev: DaemonEvent): Promise<void> {
    const id = ev.task_id as string;
    if (this.fetching.has(id)) {
      return; // its replay below reads this event too
    }
    this.fetching.add(id);
    try {
      const client = await this.current();
      const task = this.book.upsert(await client.get(id));
      const attention: DaemonEvent[] = [];
      for (const e of await replay(client, id, null)) {
        if (this.book.apply(e) !== null && e.type === "attention" && e.id >= ev.id) {
          attention.push(e);
        }
      }
      task.eventsRead = true;
      this.emit("changed", null);
      this.scheduleCounts();
      for (const e of attention) {
        this.emit("attention", task, e);
      }
    } catch {
      // the next event of this task tries again
    } finally {
      this.fetching.delete(id);
    }
  }

  scheduleCounts(): void {
    if (this.countsTimer) {
      return;
    }
    this.countsTimer = setTimeout(() => {
      this.countsTimer = null;
      if (this.client !== null) {
        void this.refreshCounts(this.client).catch(() => undefined);
      }
    }, this.opts.countsDelayMs ?? 250);
  }

  /** Tasks working and waiting for the user, from the daemon (all tasks, not only the shown). */
  async refreshCounts(client: Client): Promise<Counts> {
    const [working, waiting] = await Promise.all([
      client.list({ state: WORKING_STATES, limit: 500 }),
      client.list({ state: [...HUMAN_STATES], limit: 500 }),
    ]);
    for (const summary of waiting.tasks ?? []) {
      if (!this.book.has(summary.id)) {
        this.book.upsert(summary); // an old task that waits: the inbox shows it
      }
    }
    this.counts = { working: (working.tasks ?? []).length, waiting: (waiting.tasks ?? []).length };
    this.emit("counts", this.counts);
    return this.counts;
  }
}
