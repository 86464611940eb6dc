// The tierd extension: finds the local daemon (daemon.json, identity check), keeps its tasks
// live over Server-Sent Events, and lets the person at the editor submit, follow, answer,
// review in the diff editor, apply, reject and cancel. The token is read from the 0600
// discovery file by this extension host process and is sent only to the verified daemon.

import * as vscode from "vscode";

import { Client } from "./client/client";
import { LiveTasks } from "./client/live";
import { DIFF_SCHEME, DiffSides, TASK_SCHEME, TaskDocuments } from "./ui/documents";
import { Flows } from "./ui/flows";
import { StatusItem } from "./ui/status";
import { Node, TasksTree } from "./ui/tree";

export function activate(context: vscode.ExtensionContext): { live: LiveTasks } {
  const config = (): vscode.WorkspaceConfiguration => vscode.workspace.getConfiguration("tierd");
  const live = new LiveTasks({
    discover: () => Client.discover({ home: config().get<string>("home") || undefined }),
  });
  const tree = new TasksTree(live);
  const view = vscode.window.createTreeView<Node>("tierd.tasks", { treeDataProvider: tree, showCollapseAll: true });
  const docs = new TaskDocuments(live);
  const flows = new Flows(live, tree, view as vscode.TreeView<unknown>, docs);
  const status = new StatusItem(live);

  const setContext = (): void => {
    void vscode.commands.executeCommand("setContext", "tierd.state", live.state.kind);
  };
  setContext();
  let refreshTimer: NodeJS.Timeout | null = null;
  const refreshSoon = (): void => {
    if (refreshTimer === null) {
      refreshTimer = setTimeout(() => {
        refreshTimer = null;
        tree.refresh();
      }, 100);
    }
  };
  live.on("state", () => {
    setContext();
    refreshSoon();
  });
  live.on("changed", refreshSoon);
  live.on("counts", refreshSoon);
  // Once per connection: what already waited for the user before this window was there.
  let told = false;
  live.on("state", (state) => {
    if (state.kind !== "up") {
      told = false;
    }
  });
  live.on("counts", (counts) => {
    if (told || live.state.kind !== "up") {
      return;
    }
    told = true;
    if (counts.waiting && config().get<boolean>("notifications", true)) {
      const n = counts.waiting;
      void vscode.window
        .showInformationMessage(`tierd: ${n} task${n === 1 ? "" : "s"} wait${n === 1 ? "s" : ""} for you`, "Open the inbox")
        .then((pick) => pick && flows.inbox());
    }
  });
  live.on("attention", (task, ev) => void flows.attention(task, String(ev.data?.kind ?? ""), String(ev.data?.reason ?? "")));

  const command = (name: string, fn: (...args: any[]) => unknown): void => {
    context.subscriptions.push(vscode.commands.registerCommand(name, fn));
  };
  const taskOf = (arg: unknown): string | undefined =>
    typeof arg === "string" ? arg : arg && typeof arg === "object" && "taskId" in arg ? String((arg as Node).taskId) : undefined;
  command("tierd.submit", () => flows.submit(false));
  command("tierd.submitSelection", () => flows.submit(true));
  command("tierd.list", () => flows.list());
  command("tierd.inbox", () => flows.inbox());
  command("tierd.show", (arg) => flows.show(taskOf(arg)));
  command("tierd.cancel", (arg) => flows.cancel(taskOf(arg)));
  command("tierd.answer", (arg) => flows.answer(taskOf(arg)));
  command("tierd.review", (arg) => flows.review(taskOf(arg)));
  command("tierd.openFileDiff", (taskId: string, index: number) => flows.openFile(taskId, index));
  command("tierd.openDashboard", () => flows.openDashboard());
  command("tierd.startDaemon", () => flows.startDaemon());
  command("tierd.noDaemon", () => flows.noDaemon());
  command("tierd.reconnect", () => live.restart());

  context.subscriptions.push(
    view,
    status,
    vscode.workspace.registerTextDocumentContentProvider(DIFF_SCHEME, new DiffSides()),
    vscode.workspace.registerTextDocumentContentProvider(TASK_SCHEME, docs),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration("tierd.home")) {
        live.restart();
      }
    }),
    { dispose: () => live.stop() },
  );
  live.start();
  return { live };
}

export function deactivate(): void {
  // Everything is disposed through the context's subscriptions.
}
