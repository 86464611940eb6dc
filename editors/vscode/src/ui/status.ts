// The status bar item: tasks working and how many wait for the user; a click opens the inbox.
// When no daemon answers it says so, and a click offers to start one.

import * as vscode from "vscode";

import type { LiveTasks } from "../client/live";

export class StatusItem implements vscode.Disposable {
  private readonly item: vscode.StatusBarItem;

  constructor(private readonly live: LiveTasks) {
    this.item = vscode.window.createStatusBarItem("tierd.status", vscode.StatusBarAlignment.Left, 50);
    this.item.name = "tierd";
    live.on("state", () => this.update());
    live.on("counts", () => this.update());
    this.update();
    this.item.show();
  }

  update(): void {
    const state = this.live.state;
    const item = this.item;
    item.backgroundColor = undefined;
    if (state.kind === "connecting") {
      item.text = "$(sync~spin) tierd";
      item.tooltip = "tierd: looking for the daemon";
      item.command = undefined;
      return;
    }
    if (state.kind === "down") {
      item.text = "$(debug-disconnect) tierd: no daemon";
      item.tooltip = `tierd: ${state.reason}\nClick to start the daemon.`;
      item.backgroundColor = new vscode.ThemeColor("statusBarItem.warningBackground");
      item.command = "tierd.noDaemon";
      return;
    }
    const { working, waiting } = this.live.counts;
    item.text = `$(${working ? "loading~spin" : "pulse"}) tierd ${working} running` + (waiting ? ` $(bell-dot) ${waiting} waiting` : " · 0 waiting");
    item.tooltip = `tierd at ${state.url}: ${working} task(s) running, ${waiting} waiting for you. Click for the inbox.`;
    if (waiting) {
      item.backgroundColor = new vscode.ThemeColor("statusBarItem.warningBackground");
    }
    item.command = "tierd.inbox";
  }

  dispose(): void {
    this.item.dispose();
  }
}
