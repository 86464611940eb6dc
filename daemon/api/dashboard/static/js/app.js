// The dashboard's entry point: sign-in check, the routes (#/inbox, #/tasks, #/tasks/<id>,
// #/new, #/settings), the navigation, and the "needs you" count everywhere.

import { logout, onSignedOut, startSession } from "./api.js";
import { clear, h } from "./dom.js";
import { statusFeed, waitingCount } from "./status.js";
import * as inbox from "./views/inbox.js";
import * as newTask from "./views/new_task.js";
import * as settings from "./views/settings.js";
import * as task from "./views/task.js";
import * as tasks from "./views/tasks.js";

const ROUTES = [
  [/^#\/inbox$/, inbox, "inbox"],
  [/^#\/tasks$/, tasks, "tasks"],
  [/^#\/tasks\/([^/]+)$/, task, "tasks"],
  [/^#\/new$/, newTask, "new"],
  [/^#\/settings$/, settings, "settings"],
];

const main = document.getElementById("main");
let cleanup = null;
let signedIn = false;

function setWaiting(count) {
  const badge = document.getElementById("waiting-count");
  badge.textContent = count ? String(count) : "";
  badge.hidden = !count;
  document.title = count ? `(${count}) tierd` : "tierd";
}

const ctx = { setWaiting };

function route() {
  if (!signedIn) return;
  if (cleanup) cleanup();
  cleanup = null;
  const hash = location.hash && location.hash !== "#" ? location.hash : "#/inbox";
  const found = ROUTES.map(([pattern, view, nav]) => [hash.match(pattern), view, nav]).find(([m]) => m);
  for (const link of document.querySelectorAll("nav a[data-nav]")) {
    if (found && link.dataset.nav === found[2]) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  clear(main);
  document.title = "tierd";
  if (!found) {
    main.append(h("h1", { tabindex: "-1" }, "Not found"), h("p", {}, h("a", { href: "#/inbox" }, "Back to the inbox")));
  } else {
    const [match, view] = found;
    cleanup = view.mount(main, ctx, match.slice(1).map(decodeURIComponent)) || null;
  }
  const heading = main.querySelector("h1");
  if (heading) heading.focus({ preventScroll: true });
}

function showSignedOut() {
  signedIn = false;
  if (cleanup) cleanup();
  cleanup = null;
  statusFeed.stop();
  document.body.classList.remove("signed-in");
  clear(main);
  main.append(
    h("h1", { tabindex: "-1" }, "Sign in to tierd"),
    h("p", {}, "This browser has no session with the daemon (or it ended)."),
    h("p", {}, "In a terminal, run ", h("code", {}, "tierd open"),
      ": it prints a one-time link (valid for 60 seconds) that signs this browser in."),
  );
  main.querySelector("h1").focus();
}

async function boot() {
  onSignedOut(showSignedOut);
  document.getElementById("logout").addEventListener("click", async () => {
    await logout();
    showSignedOut();
  });
  let ok = false;
  try {
    ok = await startSession();
  } catch {
    ok = false;
  }
  if (!ok) {
    showSignedOut();
    return;
  }
  signedIn = true;
  document.body.classList.add("signed-in");
  statusFeed.subscribe((status) => setWaiting(waitingCount(status)));
  statusFeed.start();
  window.addEventListener("hashchange", route);
  route();
}

boot();
