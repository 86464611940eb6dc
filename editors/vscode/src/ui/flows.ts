// What the user does with tasks: submit, list, cancel, the inbox, answer questions (all of a
// task's open questions in one go, sent as one task/answer), review a result (a code task's
// files in the diff editor, then apply with one of task/approve's choices, or reject with a
// comment), open the dashboard and start the daemon.

import * as vscode from "vscode";

import { ApiError, applyChoices, Json } from "../client/client";
import { DaemonNotRunning } from "../client/discovery";
import { currentBranch, workTreeRoot } from "../client/git";
import type { LiveTasks } from "../client/live";
import { DiffFile } from "../client/patch";
import { startDaemon } from "../client/start";
import { HUMAN_STATES, TERMINAL_STATES, TaskView, taskLine } from "../client/tasks";
import { TaskDocuments, openFileDiff } from "./documents";
import type { TasksTree } from "./tree";

const APPLY_WORDS: Record<string, (branch: string | null, taskId: string) => string> = {
  branch: (_b, id) => `leave the result on its branch tierd/${id}/_result`,
  merge: (b) => `merge it into your current branch${b ? ` (${b})` : ""}; refused, changing nothing, over your uncommitted work`,
  patch: () => "write a patch file under tierd's data directory",
};

type TaskArg = string | { taskId?: string } | undefined;

function taskIdOf(arg: TaskArg): string | undefined {
  if (typeof arg === "string") {
    return arg;
  }
  return arg?.taskId;
}

function short(text: string, max = 60): string {
  const line = text.split(/\r?\n/)[0].trim();
  return line.length > max ? line.slice(0, max - 1) + "…" : line;
}

export class Flows {
  private applyCache: { choices: string[]; description: string } | null = null;

  constructor(
    private readonly live: LiveTasks,
    private readonly tree: TasksTree,
    private readonly view: vscode.TreeView<unknown>,
    private readonly docs: TaskDocuments,
  ) {
    live.on("state", () => (this.applyCache = null));
  }

  private config(): vscode.WorkspaceConfiguration {
    return vscode.workspace.getConfiguration("tierd");
  }

  /** Run an action against the daemon; say clearly what went wrong (no daemon: offer to start). */
  async guard<T>(what: string, action: () => Promise<T>): Promise<T | undefined> {
    try {
      return await action();
    } catch (err) {
      if (err instanceof DaemonNotRunning) {
        void this.noDaemon(err.message);
      } else if (err instanceof ApiError) {
        const data = err.data && typeof err.data === "object" ? (err.data as Json) : {};
        const files = Array.isArray(data.files) ? `: ${data.files.join(", ")}` : "";
        void vscode.window.showErrorMessage(`tierd: ${what}: ${err.message}${files}`);
      } else {
        void vscode.window.showErrorMessage(`tierd: ${what}: ${(err as Error).message}`);
      }
      return undefined;
    }
  }

  /** The message when no daemon answers, with the action that starts one. */
  async noDaemon(reason?: string): Promise<void> {
    const why = reason ?? (this.live.state.kind === "down" ? this.live.state.reason : "no tierd daemon answers");
    const pick = await vscode.window.showWarningMessage(`tierd: ${why}`, "Start the daemon", "Retry");
    if (pick === "Start the daemon") {
      await this.startDaemon();
    } else if (pick === "Retry") {
      this.live.restart();
    }
  }

  async startDaemon(): Promise<void> {
    const executable = this.config().get<string>("executable") || "tierd";
    const home = this.config().get<string>("home") || undefined;
    const result = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: "tierd: starting the daemon…" },
      () => startDaemon(executable, { home, cwd: vscode.workspace.workspaceFolders?.[0]?.uri.fsPath }),
    );
    if (result.ok) {
      this.live.restart();
      void vscode.window.showInformationMessage(`tierd: ${result.output.split("\n").pop() || "the daemon started"}`);
      return;
    }
    const pick = await vscode.window.showErrorMessage(
      `tierd: the daemon did not start: ${result.output.slice(-600) || `exit ${result.code}`}`,
      "Set the tierd executable",
    );
    if (pick) {
      await vscode.commands.executeCommand("workbench.action.openSettings", "tierd.executable");
    }
  }

  // --- submit --------------------------------------------------------------------------------

  /** The goal: the selection (when the user takes it) or what they type. */
  private async goal(fromSelection: boolean): Promise<string | undefined> {
    const editor = vscode.window.activeTextEditor;
    const selected = editor && !editor.selection.isEmpty ? editor.document.getText(editor.selection).trim() : "";
    if (fromSelection) {
      return selected || this.typeGoal();
    }
    if (selected) {
      const pick = await vscode.window.showQuickPick(
        [
          { label: "Use the selection as the goal", iconPath: new vscode.ThemeIcon("selection"), detail: short(selected, 120), use: true },
          { label: "Type a goal", iconPath: new vscode.ThemeIcon("edit"), use: false },
        ],
        { title: "tierd: submit a task", ignoreFocusOut: true },
      );
      if (pick === undefined) {
        return undefined;
      }
      return pick.use ? selected : this.typeGoal();
    }
    return this.typeGoal();
  }

  private typeGoal(): Thenable<string | undefined> {
    return vscode.window.showInputBox({
      title: "tierd: submit a task",
      prompt: "What should the team achieve?",
      placeHolder: "e.g. Add a --verbose flag to the CLI",
      ignoreFocusOut: true,
      validateInput: (v) => (v.trim() ? null : "A goal cannot be empty"),
    });
  }

  /** The repositories of the workspace's folders (a code task works on one of them). */
  private async repositories(): Promise<string[]> {
    const roots: string[] = [];
    for (const folder of vscode.workspace.workspaceFolders ?? []) {
      if (folder.uri.scheme !== "file") {
        continue;
      }
      const root = await workTreeRoot(folder.uri.fsPath);
      if (root !== null && !roots.includes(root)) {
        roots.push(root);
      }
    }
    return roots;
  }

  async submit(fromSelection = false): Promise<void> {
    const goal = await this.goal(fromSelection);
    if (!goal || !goal.trim()) {
      return;
    }
    const repos = await this.repositories();
    let repo: string | undefined;
    let includeUncommitted = false;
    if (repos.length) {
      type KindItem = vscode.QuickPickItem & { repo?: string; uncommitted?: boolean };
      const items: KindItem[] = [{ label: "Text task", iconPath: new vscode.ThemeIcon("comment"), detail: "no repository: the team answers in text" }];
      for (const r of repos) {
        const name = r.split("/").pop() || r;
        items.push({ label: `Code task on ${name}`, iconPath: new vscode.ThemeIcon("git-branch"), description: r, detail: "from HEAD, in worktrees of its own", repo: r });
        items.push({
          label: `Code task on ${name}, with my uncommitted changes`, iconPath: new vscode.ThemeIcon("git-branch"),
          description: r,
          detail: "from HEAD plus your uncommitted work (snapshot; your files stay as they are)",
          repo: r,
          uncommitted: true,
        });
      }
      const kind = await vscode.window.showQuickPick(items, { title: `tierd: ${short(goal)}`, placeHolder: "What kind of task?", ignoreFocusOut: true });
      if (kind === undefined) {
        return;
      }
      repo = kind.repo;
      includeUncommitted = kind.uncommitted ?? false;
    }
    const out = await this.guard("submit", async () => {
      const client = await this.live.current();
      return client.submit(goal, { repo, includeUncommitted });
    });
    if (out === undefined) {
      return;
    }
    const id = String(out.task_id);
    void this.reveal(id);
    void vscode.window.showInformationMessage(`tierd: submitted task ${id}${repo ? ` on ${repo}` : ""}`);
  }

  private async reveal(taskId: string): Promise<void> {
    for (let i = 0; i < 40 && !this.live.book.has(taskId); i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    if (this.live.book.has(taskId)) {
      try {
        await this.view.reveal(this.tree.taskNode(taskId), { select: true, focus: false, expand: true });
      } catch {
        // the view is not shown: nothing to reveal in
      }
    }
  }

  // --- pick a task ---------------------------------------------------------------------------

  private async pickTask(title: string, tasks: Json[], placeHolder: string): Promise<string | undefined> {
    if (!tasks.length) {
      void vscode.window.showInformationMessage(`tierd: ${placeHolder.toLowerCase().startsWith("no") ? placeHolder : "no task to choose"}`);
      return undefined;
    }
    const pick = await vscode.window.showQuickPick(
      tasks.map((t) => ({
        label: short(String(t.goal ?? t.id), 90),
        description: String(t.state).replace("_", " "),
        detail: `${t.id}` + (t.repo ? ` · ${t.repo}` : ""),
        id: String(t.id),
      })),
      { title, placeHolder, matchOnDescription: true, matchOnDetail: true, ignoreFocusOut: true },
    );
    return pick?.id;
  }

  async list(): Promise<void> {
    const page = await this.guard("list", async () => (await this.live.current()).list({ limit: 100 }));
    if (page === undefined) {
      return;
    }
    const id = await this.pickTask("tierd: tasks", page.tasks ?? [], "The newest tasks: pick one");
    if (id === undefined) {
      return;
    }
    const state = String((page.tasks as Json[]).find((t) => t.id === id)?.state);
    const actions: Array<vscode.QuickPickItem & { run: () => Promise<void> }> = [
      { label: "Show", iconPath: new vscode.ThemeIcon("book"), run: () => this.show(id) },
      { label: "Reveal in the tasks view", iconPath: new vscode.ThemeIcon("list-tree"), run: () => this.reveal(id) },
    ];
    if (state === "input_required") {
      actions.unshift({ label: "Answer its questions", iconPath: new vscode.ThemeIcon("question"), run: () => this.answer(id) });
    }
    if (state === "awaiting_approval") {
      actions.unshift({ label: "Review its result", iconPath: new vscode.ThemeIcon("diff"), run: () => this.review(id) });
    }
    if (!TERMINAL_STATES.has(state)) {
      actions.push({ label: "Cancel", iconPath: new vscode.ThemeIcon("circle-slash"), run: () => this.cancel(id) });
    }
    const act = await vscode.window.showQuickPick(actions, { title: `tierd: task ${id}`, ignoreFocusOut: true });
    await act?.run();
  }

  async show(arg: TaskArg): Promise<void> {
    const id = taskIdOf(arg);
    if (id === undefined) {
      return this.list();
    }
    this.docs.refresh(id);
    await this.guard("show", async () => {
      const doc = await vscode.workspace.openTextDocument(TaskDocuments.uri(id));
      await vscode.window.showTextDocument(doc, { preview: true });
    });
  }

  async cancel(arg?: TaskArg): Promise<void> {
    let id = taskIdOf(arg);
    if (id === undefined) {
      const live = this.live.book.all().filter((t) => !TERMINAL_STATES.has(t.state));
      id = await this.pickTask("tierd: cancel a task", live.map(summary), "No task is running");
    }
    if (id === undefined) {
      return;
    }
    const goal = this.live.book.get(id)?.goal ?? id;
    const sure = await vscode.window.showWarningMessage(`Cancel the tierd task "${short(goal)}"?`, { modal: true }, "Cancel the task");
    if (sure !== "Cancel the task") {
      return;
    }
    const out = await this.guard("cancel", async () => (await this.live.current()).cancel(id as string));
    if (out !== undefined) {
      void vscode.window.showInformationMessage(`tierd: task ${id} is ${out.state ?? "canceled"}`);
    }
  }

  /** The tasks that wait for the user: pick one to answer or review. */
  async inbox(): Promise<void> {
    const client = await this.guard("inbox", () => this.live.current());
    if (client === undefined) {
      return;
    }
    await this.guard("inbox", () => this.live.refreshCounts(client));
    const waiting = this.live.book.waiting();
    const id = await this.pickTask(
      `tierd: inbox (${waiting.length} waiting for you)`,
      waiting.map(summary),
      "No task waits for you",
    );
    if (id === undefined) {
      return;
    }
    const task = this.live.book.get(id);
    await (task?.state === "input_required" ? this.answer(id) : this.review(id));
  }

  // --- answer --------------------------------------------------------------------------------

  /** All of a task's open questions, one input box each, then one task/answer. */
  async answer(arg?: TaskArg): Promise<void> {
    let id = taskIdOf(arg);
    if (id === undefined) {
      const asking = this.live.book.waiting().filter((t) => t.state === "input_required");
      id = await this.pickTask("tierd: answer questions", asking.map(summary), "No task has a question for you");
    }
    if (id === undefined) {
      return;
    }
    const task = await this.guard("answer", async () => (await this.live.current()).get(id as string));
    if (task === undefined) {
      return;
    }
    const open: Json[] = (task.questions ?? []).filter((q: Json) => q.answer === null);
    if (!open.length) {
      void vscode.window.showInformationMessage(`tierd: task ${id} has no open question (it is ${task.state})`);
      return;
    }
    const answers: Record<string, string> = {};
    for (const [i, q] of open.entries()) {
      const value = await vscode.window.showInputBox({
        title: `tierd: ${short(String(task.goal))} — question ${i + 1} of ${open.length}`,
        prompt: (q.stream_id ? `${q.stream_id}: ` : "") + String(q.question),
        ignoreFocusOut: true,
        validateInput: (v) => (v.trim() ? null : "An answer cannot be empty"),
      });
      if (value === undefined) {
        void vscode.window.showInformationMessage("tierd: nothing was sent (the answers are sent together)");
        return;
      }
      answers[q.id] = value;
    }
    const out = await this.guard("answer", async () => (await this.live.current()).answer(id as string, answers));
    if (out !== undefined) {
      const n = (out.answered ?? Object.keys(answers)).length;
      void vscode.window.showInformationMessage(`tierd: sent ${n} answer${n === 1 ? "" : "s"} to task ${id}`);
    }
  }

  // --- review --------------------------------------------------------------------------------

  private async applyOptions(): Promise<{ choices: string[]; description: string }> {
    if (this.applyCache === null) {
      const client = await this.live.current();
      this.applyCache = applyChoices(await client.describe());
    }
    return this.applyCache;
  }

  /** Open one file of a code task's result in the diff editor. */
  async openFile(taskId: string, index: number): Promise<void> {
    await this.guard("diff", async () => {
      const entry = await this.tree.resultFiles(taskId);
      const file = entry.files[index];
      if (file !== undefined) {
        await openFileDiff(taskId, entry.diff, file);
      }
    });
  }

  /**
   * Review a result: a code task's files (each opens in the diff editor, then the choice
   * comes back), then apply it with one of task/approve's choices or reject it with a comment.
   * A text task's result opens as a document first.
   */
  async review(arg?: TaskArg): Promise<void> {
    let id = taskIdOf(arg);
    if (id === undefined) {
      const ready = this.live.book.waiting().filter((t) => t.state === "awaiting_approval");
      id = await this.pickTask("tierd: review a result", ready.map(summary), "No result waits for your approval");
    }
    if (id === undefined) {
      return;
    }
    const taskId = id;
    const task = await this.guard("review", async () => (await this.live.current()).get(taskId));
    if (task === undefined) {
      return;
    }
    if (task.state !== "awaiting_approval") {
      void vscode.window.showInformationMessage(`tierd: task ${taskId} does not wait for approval (it is ${task.state})`);
      return;
    }
    const code = Boolean(task.code?.repo);
    let files: DiffFile[] = [];
    if (code) {
      const entry = await this.guard("diff", () => this.tree.resultFiles(taskId));
      if (entry === undefined) {
        return;
      }
      files = entry.files;
    } else {
      await this.show(taskId);
    }
    type Item = vscode.QuickPickItem & { file?: number; act?: "apply" | "approve" | "reject" | "show" };
    for (;;) {
      const items: Item[] = files.map((f, i) => ({
        label: (f.newPath ?? f.oldPath) as string, iconPath: new vscode.ThemeIcon("diff"),
        description: `+${f.insertions} -${f.deletions}` + (f.status === "modified" ? "" : ` ${f.status}`),
        file: i,
      }));
      if (items.length) {
        items.push({ label: "", kind: vscode.QuickPickItemKind.Separator });
      }
      items.push(
        code
          ? { label: "Apply…", iconPath: new vscode.ThemeIcon("check"), detail: "approve the result and choose how it is applied", act: "apply" }
          : { label: "Approve", iconPath: new vscode.ThemeIcon("check"), detail: "accept the result", act: "approve" },
        { label: "Reject with a comment…", iconPath: new vscode.ThemeIcon("close"), detail: "the team revises the result with your comment", act: "reject" },
        { label: "Show the task", iconPath: new vscode.ThemeIcon("book"), act: "show" },
      );
      const pick = await vscode.window.showQuickPick(items, {
        title: `tierd: review "${short(String(task.goal))}"`,
        placeHolder: code ? "Open a file's diff, or decide" : "Decide",
        ignoreFocusOut: true,
      });
      if (pick === undefined) {
        return;
      }
      if (pick.file !== undefined) {
        await this.openFile(taskId, pick.file);
        continue;
      }
      if (pick.act === "show") {
        await this.show(taskId);
        continue;
      }
      if (pick.act === "reject") {
        if (await this.reject(taskId)) {
          return;
        }
        continue;
      }
      if (await this.approve(taskId, code, task.code?.repo)) {
        return;
      }
    }
  }

  private async approve(taskId: string, code: boolean, repo?: string): Promise<boolean> {
    let apply: string | undefined;
    if (code) {
      const options = await this.guard("apply", () => this.applyOptions());
      if (options === undefined) {
        return false;
      }
      const branch = repo ? await currentBranch(repo) : null;
      const pick = await vscode.window.showQuickPick(
        options.choices.map((c) => ({ label: c, detail: APPLY_WORDS[c]?.(branch, taskId) ?? "", value: c })),
        { title: "tierd: apply the result", placeHolder: options.description || "How should the result be applied?", ignoreFocusOut: true },
      );
      if (pick === undefined) {
        return false;
      }
      apply = pick.value;
    }
    const out = await this.guard("apply", async () => (await this.live.current()).approve(taskId, "approve", { apply }));
    if (out === undefined) {
      return false;
    }
    const a: Json | null = out.applied ?? null;
    let said = `tierd: approved task ${taskId}`;
    if (a?.how === "merge") {
      said = `tierd: merged the result into ${a.branch ?? "your branch"}` + (a.commit ? ` (${String(a.commit).slice(0, 12)})` : "");
    } else if (a?.how === "patch") {
      said = `tierd: the patch is at ${a.path}`;
    } else if (a?.how === "branch") {
      said = `tierd: the result is on branch ${a.branch}`;
    }
    void vscode.window.showInformationMessage(said);
    return true;
  }

  private async reject(taskId: string): Promise<boolean> {
    const comment = await vscode.window.showInputBox({
      title: "tierd: reject the result",
      prompt: "What should change? The team revises the result with your comment.",
      ignoreFocusOut: true,
      validateInput: (v) => (v.trim() ? null : "Say what should change"),
    });
    if (comment === undefined) {
      return false;
    }
    const out = await this.guard("reject", async () => (await this.live.current()).approve(taskId, "reject", { comment }));
    if (out === undefined) {
      return false;
    }
    void vscode.window.showInformationMessage(`tierd: rejected; task ${taskId} is revised with your comment`);
    return true;
  }

  // --- the dashboard -------------------------------------------------------------------------

  /** Sign the browser in with a one-time link (it holds no token) and open it. */
  async openDashboard(): Promise<void> {
    const link = await this.guard("dashboard", async () => (await this.live.current()).loginLink());
    if (link !== undefined) {
      await vscode.env.openExternal(vscode.Uri.parse(link.url));
    }
  }

  // --- attention -----------------------------------------------------------------------------

  /** A task needs the user: say so, with the action that answers. */
  async attention(task: TaskView, kind: string, reason: string): Promise<void> {
    if (!this.config().get<boolean>("notifications", true)) {
      return;
    }
    const goal = `"${short(task.goal, 50)}"`;
    if (kind === "questions") {
      const n = task.questions.size || 1;
      const pick = await vscode.window.showInformationMessage(`tierd: ${goal} asks ${n} question${n === 1 ? "" : "s"}`, "Answer", "Show");
      if (pick === "Answer") {
        await this.answer(task.id);
      } else if (pick === "Show") {
        await this.show(task.id);
      }
    } else if (kind === "approval") {
      const pick = await vscode.window.showInformationMessage(`tierd: the result of ${goal} waits for your review`, "Review", "Show");
      if (pick === "Review") {
        await this.review(task.id);
      } else if (pick === "Show") {
        await this.show(task.id);
      }
    } else if (kind === "failed") {
      const pick = await vscode.window.showWarningMessage(`tierd: ${goal} failed: ${short(reason, 200)}`, "Show");
      if (pick === "Show") {
        await this.show(task.id);
      }
    } else if (HUMAN_STATES.has(task.state)) {
      void vscode.window.showInformationMessage(`tierd: ${goal}: ${reason}`);
    }
  }
}

function summary(t: TaskView): Json {
  return { id: t.id, goal: t.goal, state: taskLine(t), repo: t.repo };
}
