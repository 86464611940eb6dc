// The daemon's status, polled for everyone who wants it: the nav's "needs you" count and the
// governor chart (which asks for a faster pace while it is on screen).

import { api } from "./api.js";

const MAX_SAMPLES = 600;

class StatusFeed {
  constructor() {
    this.listeners = new Set();
    this.samples = [];
    this.last = null;
    this.period = 3000;
    this.timer = null;
    this.running = false;
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.tick();
  }

  stop() {
    this.running = false;
    clearTimeout(this.timer);
  }

  setPeriod(ms) {
    this.period = ms;
    if (this.running) {
      clearTimeout(this.timer);
      this.tick();
    }
  }

  subscribe(listener) {
    this.listeners.add(listener);
    if (this.last) listener(this.last, this.samples);
    return () => this.listeners.delete(listener);
  }

  async tick() {
    if (!document.hidden) {
      try {
        const status = await api.get("/v1/status");
        const c = status.concurrency;
        this.samples.push({
          at: Date.now() / 1000,
          limit: c.limit,
          in_flight: c.in_flight,
          ceiling: c.ceiling,
          used_fraction: c.memory.used_fraction,
          soft: c.memory.soft,
          hard: c.memory.hard,
        });
        if (this.samples.length > MAX_SAMPLES) this.samples.shift();
        this.last = status;
        for (const listener of this.listeners) listener(status, this.samples);
      } catch {
        // Signed out or the daemon is away: the next tick tries again (or nobody listens).
      }
    }
    if (this.running) this.timer = setTimeout(() => this.tick(), this.period);
  }
}

export const statusFeed = new StatusFeed();

/** How many tasks wait for the human, from a status answer. */
export function waitingCount(status) {
  const tasks = status?.tasks || {};
  return (tasks.input_required || 0) + (tasks.awaiting_approval || 0);
}
