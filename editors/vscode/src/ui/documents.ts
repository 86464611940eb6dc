// Read-only documents the extension shows: the two sides of a code task's diff (scheme
// `tierd-diff`, read from the task's repository at `base_commit` and `head`, opened together
// in VS Code's own diff editor) and a task as Markdown (scheme `tierd-task`).

import * as vscode from "vscode";

import type { Json } from "../client/client";
import { fileAt } from "../client/git";
import { DiffFile } from "../client/patch";
import { formatUsd } from "../client/tasks";
import type { LiveTasks } from "../client/live";

export const DIFF_SCHEME = "tierd-diff";
export const TASK_SCHEME = "tierd-task";

interface Side {
  repo: string;
  commit: string;
  path: string;
}

/** The URI of one side of a file: its path keeps the file's name (the language follows it). */
export function sideUri(taskId: string, side: "base" | "result", where: Side | null, shownPath: string): vscode.Uri {
  const query = where === null ? "" : new URLSearchParams({ repo: where.repo, commit: where.commit, path: where.path }).toString();
  return vscode.Uri.from({ scheme: DIFF_SCHEME, path: `/${taskId}/${side}/${shownPath}`, query });
}

export class DiffSides implements vscode.TextDocumentContentProvider {
  async provideTextDocumentContent(uri: vscode.Uri): Promise<string> {
    if (!uri.query) {
      return ""; // the missing side of an added or deleted file
    }
    const q = new URLSearchParams(uri.query);
    const bytes = await fileAt(q.get("repo") ?? "", q.get("commit") ?? "", q.get("path") ?? "");
    if (bytes === null) {
      return "";
    }
    if (bytes.subarray(0, 8000).includes(0)) {
      return `(a binary file of ${bytes.length} bytes)`;
    }
    return bytes.toString("utf-8");
  }
}

/** Open one file of a code task's result in the diff editor: base on the left, result right. */
export async function openFileDiff(
  taskId: string,
  diff: { repo: string; base_commit: string; head: string },
  file: DiffFile,
): Promise<void> {
  const shown = (file.newPath ?? file.oldPath) as string;
  const left = sideUri(
    taskId,
    "base",
    file.oldPath === null ? null : { repo: diff.repo, commit: diff.base_commit, path: file.oldPath },
    file.oldPath ?? shown,
  );
  const right = sideUri(
    taskId,
    "result",
    file.newPath === null ? null : { repo: diff.repo, commit: diff.head, path: file.newPath },
    shown,
  );
  const what = file.status === "renamed" ? `${file.oldPath} → ${file.newPath}` : shown;
  const title = `${what} (tierd ${taskId.slice(0, 10)}: base ↔ result)`;
  await vscode.commands.executeCommand("vscode.diff", left, right, title, { preview: false });
}

function cell(text: unknown): string {
  return String(text ?? "").replace(/\|/g, "\\|").replace(/\r?\n/g, " ");
}

/** A task as Markdown: goal, state, repository, streams, questions, result or error, cost. */
export function taskMarkdown(task: Json): string {
  const lines = [`# ${cell(task.goal).slice(0, 200)}`, "", `- task: \`${task.id}\``, `- state: **${task.state}**`];
  if (task.code?.repo) {
    lines.push(`- repository: \`${task.code.repo}\` (base ${task.code.base} at \`${String(task.code.base_commit ?? "").slice(0, 12)}\`)`);
  }
  if (task.code?.applied) {
    const a = task.code.applied;
    lines.push(`- applied: ${a.how}` + (a.branch ? ` on ${a.branch}` : "") + (a.commit ? ` at \`${String(a.commit).slice(0, 12)}\`` : "") + (a.path ? ` (${a.path})` : ""));
  }
  const cost = task.report?.cost?.total_usd;
  if (typeof cost === "number") {
    lines.push(`- cost: ${formatUsd(cost)}`);
  }
  if (task.error) {
    lines.push("", "## Error", "", "```", String(task.error), "```");
  }
  const open = (task.questions ?? []).filter((q: Json) => q.answer === null);
  if (open.length) {
    lines.push("", "## Questions for you", "");
    for (const q of open) {
      lines.push(`- **${cell(q.stream_id)}**: ${cell(q.question)}`);
    }
  }
  if ((task.streams ?? []).length) {
    lines.push("", "## Streams", "", "| stream | title | state | verdict | rounds |", "| --- | --- | --- | --- | ---: |");
    for (const s of task.streams) {
      lines.push(`| ${cell(s.id)} | ${cell(s.title)} | ${cell(s.state)} | ${cell(s.verdict)} | ${cell(s.rounds)} |`);
    }
  }
  if (task.result) {
    lines.push("", "## Result", "", String(task.result));
  }
  return lines.join("\n") + "\n";
}

export class TaskDocuments implements vscode.TextDocumentContentProvider {
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.changed.event;

  constructor(private readonly live: LiveTasks) {}

  static uri(taskId: string): vscode.Uri {
    return vscode.Uri.from({ scheme: TASK_SCHEME, path: `/${taskId}.md` });
  }

  refresh(taskId: string): void {
    this.changed.fire(TaskDocuments.uri(taskId));
  }

  async provideTextDocumentContent(uri: vscode.Uri): Promise<string> {
    const id = uri.path.replace(/^\//, "").replace(/\.md$/, "");
    const client = await this.live.current();
    return taskMarkdown(await client.get(id));
  }
}
