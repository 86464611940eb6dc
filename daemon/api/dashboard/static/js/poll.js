// Polling without overlap: one load at a time, a refresh asked for meanwhile runs right after,
// nothing while the tab is hidden, and nothing at all once stopped.

export function poller(load, periodMs) {
  let timer = null;
  let inFlight = null;
  let again = false;
  let stopped = false;

  async function run() {
    clearTimeout(timer);
    if (stopped) return;
    if (inFlight) {
      again = true;
      return;
    }
    inFlight = (async () => {
      try {
        if (!document.hidden) await load();
      } finally {
        inFlight = null;
      }
    })();
    await inFlight;
    if (stopped) return;
    if (again) {
      again = false;
      run();
      return;
    }
    timer = setTimeout(run, periodMs);
  }

  return {
    refresh: run,
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
    get stopped() {
      return stopped;
    },
  };
}
