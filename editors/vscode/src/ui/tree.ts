// The tree of tasks: each task (state, cost), its open questions, its streams (state, model,
// cost, the tool step running now) and, for a code task's result, its files (each opens in
// the diff editor). It changes as the events come (LiveTasks).

import * as vscode from "vscode";

import type { LiveTasks } from "../client/live";
import { DiffFile, diffFiles } from "../client/patch";
import { HUMAN_STATES, StreamView, TaskView, TERMINAL_STATES, streamLine, taskLine } from "../client/tasks";

export type Node =
  | { kind: "task"; taskId: string }
  | { kind: "stream"; taskId: string; streamId: string }
  | { kind: "question"; taskId: string; questionId: string }
  | { kind: "files"; taskId: string }
  | { kind: "file"; taskId: string; file: DiffFile; index: number }
  | { kind: "note"; taskId: string; text: string };

const STATE_ICONS: Record<string, [string, string?]> = {
  queued: ["clock"],
  planning: ["loading~spin"],
  running: ["loading~spin"],
  reviewing: ["loading~spin"],
  merging: ["loading~spin"],
  input_required: ["question", "notificationsWarningIcon.foreground"],
  awaiting_approval: ["bell-dot", "notificationsWarningIcon.foreground"],
  completed: ["pass", "testing.iconPassed"],
  failed: ["error", "testing.iconFailed"],
  canceled: ["circle-slash"],
  accepted: ["pass", "testing.iconPassed"],
  fixed: ["pass", "testing.iconPassed"],
  waiting: ["watch"],
  pending: ["circle-outline"],
  split: ["type-hierarchy-sub"],
};

function icon(state: string): vscode.ThemeIcon {
  const [name, color] = STATE_ICONS[state] ?? ["circle-outline"];
  return new vscode.ThemeIcon(name, color ? new vscode.ThemeColor(color) : undefined);
}

function firstLine(text: string, max = 80): string {
  const line = text.split(/\r?\n/)[0].trim();
  return line.length > max ? line.slice(0, max - 1) + "…" : line;
}

/** The code task's result files, read once per task and revision (`task/diff`). */
interface FilesEntry {
  key: string;
  diff: { repo: string; base_commit: string; head: string };
  files: DiffFile[];
}

export class TasksTree implements vscode.TreeDataProvider<Node> {
  private readonly changed = new vscode.EventEmitter<Node | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  private readonly files = new Map<string, FilesEntry>();
  private readonly nodes = new Map<string, Node>();

  constructor(private readonly live: LiveTasks) {}

  refresh(): void {
    this.changed.fire(undefined);
  }

  /** The node of a task (the same object each time: `reveal` needs it). */
  taskNode(taskId: string): Node {
    const key = `task:${taskId}`;
    let node = this.nodes.get(key);
    if (node === undefined) {
      node = { kind: "task", taskId };
      this.nodes.set(key, node);
    }
    return node;
  }

  getParent(node: Node): Node | undefined {
    if (node.kind === "task") {
      return undefined;
    }
    if (node.kind === "file") {
      return { kind: "files", taskId: node.taskId };
    }
    return this.taskNode(node.taskId);
  }

  /** The files of a code task's result with the sides they come from; cached per revision. */
  async resultFiles(taskId: string): Promise<FilesEntry> {
    const task = this.live.book.get(taskId);
    const key = `${task?.revision ?? ""}:${task?.state ?? ""}`;
    const cached = this.files.get(taskId);
    if (cached !== undefined && cached.key === key) {
      return cached;
    }
    const client = await this.live.current();
    const [diff, full] = await Promise.all([client.diff(taskId), client.get(taskId)]);
    const entry: FilesEntry = {
      key,
      diff: { repo: full.code?.repo ?? task?.repo ?? "", base_commit: diff.base_commit, head: diff.head },
      files: diffFiles(diff),
    };
    this.files.set(taskId, entry);
    return entry;
  }

  getTreeItem(node: Node): vscode.TreeItem {
    switch (node.kind) {
      case "task":
        return this.taskItem(node.taskId);
      case "stream":
        return this.streamItem(node.taskId, node.streamId);
      case "question": {
        const q = this.live.book.get(node.taskId)?.questions.get(node.questionId);
        const item = new vscode.TreeItem(firstLine(q?.question ?? "", 100));
        item.description = q?.streamId ?? "";
        item.tooltip = q?.question;
        item.iconPath = new vscode.ThemeIcon("question");
        item.contextValue = "tierdQuestion";
        item.command = { command: "tierd.answer", title: "Answer", arguments: [node.taskId] };
        return item;
      }
      case "files": {
        const item = new vscode.TreeItem("Result", vscode.TreeItemCollapsibleState.Expanded);
        item.id = `files:${node.taskId}`;
        item.description = "the change, file by file";
        item.iconPath = new vscode.ThemeIcon("diff");
        return item;
      }
      case "file": {
        const f = node.file;
        const shown = (f.newPath ?? f.oldPath) as string;
        const item = new vscode.TreeItem(shown);
        item.id = `file:${node.taskId}:${node.index}:${shown}`;
        item.description = `+${f.insertions} -${f.deletions}` + (f.status === "modified" ? "" : ` ${f.status}`);
        item.iconPath = new vscode.ThemeIcon(f.status === "added" ? "diff-added" : f.status === "deleted" ? "diff-removed" : "diff-modified");
        item.command = { command: "tierd.openFileDiff", title: "Open the diff", arguments: [node.taskId, node.index] };
        item.contextValue = "tierdFile";
        return item;
      }
      case "note": {
        const item = new vscode.TreeItem(firstLine(node.text, 120));
        item.tooltip = node.text;
        item.iconPath = new vscode.ThemeIcon("info");
        return item;
      }
    }
  }

  private taskItem(taskId: string): vscode.TreeItem {
    const task = this.live.book.get(taskId);
    const item = new vscode.TreeItem(firstLine(task?.goal || taskId), vscode.TreeItemCollapsibleState.Collapsed);
    item.id = `task:${taskId}`;
    if (task === undefined) {
      return item;
    }
    item.description = taskLine(task);
    item.tooltip = new vscode.MarkdownString(
      `**${task.goal.replace(/[\\`*_{}[\]()#+\-.!|<>]/g, "\\$&")}**\n\n` +
        `\`${task.id}\` · ${task.state}` +
        (task.repo ? `\n\nrepository: \`${task.repo}\`` : "") +
        (task.error ? `\n\n${task.error}` : ""),
    );
    item.iconPath = icon(task.state);
    const flags = [`state-${task.state}`];
    if (task.repo) {
      flags.push("code");
    }
    if (!TERMINAL_STATES.has(task.state)) {
      flags.push("live");
    }
    item.contextValue = `tierdTask ${flags.join(" ")}`;
    return item;
  }

  private streamItem(taskId: string, streamId: string): vscode.TreeItem {
    const s = this.live.book.get(taskId)?.streams.get(streamId);
    const kids = this.childStreams(taskId, streamId);
    const item = new vscode.TreeItem(
      streamId,
      kids.length ? vscode.TreeItemCollapsibleState.Expanded : vscode.TreeItemCollapsibleState.None,
    );
    item.id = `stream:${taskId}:${streamId}`;
    if (s !== undefined) {
      item.description = streamLine(s);
      item.tooltip = `${s.title || s.id}\n${streamLine(s)}\n${s.calls} calls, ${s.tokens} tokens`;
      item.iconPath = icon(s.state);
    }
    return item;
  }

  private childStreams(taskId: string, parent: string | null): StreamView[] {
    const task = this.live.book.get(taskId);
    if (task === undefined) {
      return [];
    }
    const all = [...task.streams.values()];
    return all.filter((s) => (s.parent && task.streams.has(s.parent) ? s.parent : null) === parent);
  }

  async getChildren(node?: Node): Promise<Node[]> {
    if (node === undefined) {
      if (this.live.state.kind !== "up") {
        return [];
      }
      return this.live.book.all().map((t) => this.taskNode(t.id));
    }
    if (node.kind === "task") {
      return this.taskChildren(node.taskId);
    }
    if (node.kind === "stream") {
      return this.childStreams(node.taskId, node.streamId).map((s) => ({ kind: "stream", taskId: node.taskId, streamId: s.id }));
    }
    if (node.kind === "files") {
      try {
        const entry = await this.resultFiles(node.taskId);
        if (!entry.files.length) {
          return [{ kind: "note", taskId: node.taskId, text: "the result changes no file" }];
        }
        return entry.files.map((file, index) => ({ kind: "file", taskId: node.taskId, file, index }));
      } catch (err) {
        return [{ kind: "note", taskId: node.taskId, text: `no diff: ${(err as Error).message}` }];
      }
    }
    return [];
  }

  private async taskChildren(taskId: string): Promise<Node[]> {
    let task: TaskView | undefined = this.live.book.get(taskId);
    if (task !== undefined && !task.eventsRead) {
      try {
        await this.live.readEvents(taskId);
      } catch {
        // shown from the summary alone
      }
      task = this.live.book.get(taskId);
    }
    if (task === undefined) {
      return [];
    }
    const out: Node[] = [];
    if (task.error && task.state === "failed") {
      out.push({ kind: "note", taskId, text: task.error });
    }
    if (HUMAN_STATES.has(task.state)) {
      for (const q of task.questions.values()) {
        out.push({ kind: "question", taskId, questionId: q.id });
      }
    }
    out.push(...this.childStreams(taskId, null).map((s): Node => ({ kind: "stream", taskId, streamId: s.id })));
    if (task.repo && (task.state === "awaiting_approval" || task.state === "completed")) {
      out.push({ kind: "files", taskId });
    }
    return out;
  }
}
