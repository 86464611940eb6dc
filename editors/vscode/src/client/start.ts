// Starting the daemon: `tierd serve --detach`, which returns once the daemon answers (0) or
// with the lines it logged when it could not start. No `vscode` import.

import { spawn } from "node:child_process";

export interface StartResult {
  ok: boolean;
  code: number | null;
  /** What the command printed (stdout and stderr): the URL, or why it could not start. */
  output: string;
}

/** The arguments that start the daemon in the background. */
export const START_ARGS = ["serve", "--detach"];

/**
 * Run `<executable> serve --detach` with `home` as TIERD_HOME when given. Resolves when the
 * command ends (it waits for the daemon to answer), or after `timeoutMs` with ok=false.
 */
export function startDaemon(
  executable: string,
  opts: { home?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number; cwd?: string } = {},
): Promise<StartResult> {
  const env: NodeJS.ProcessEnv = { ...(opts.env ?? process.env) };
  if (opts.home && opts.home.trim()) {
    env.TIERD_HOME = opts.home.trim();
  }
  return new Promise((resolve) => {
    let output = "";
    let settled = false;
    const finish = (result: StartResult): void => {
      if (!settled) {
        settled = true;
        clearTimeout(timer);
        resolve(result);
      }
    };
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn(executable, START_ARGS, {
        env,
        cwd: opts.cwd,
        stdio: ["ignore", "pipe", "pipe"],
        detached: false,
      });
    } catch (err) {
      resolve({ ok: false, code: null, output: `cannot run ${executable}: ${(err as Error).message}` });
      return;
    }
    const timer = setTimeout(() => {
      finish({ ok: false, code: null, output: output + `\n${executable} ${START_ARGS.join(" ")} did not return in time` });
    }, opts.timeoutMs ?? 90_000);
    child.stdout?.on("data", (c: Buffer) => (output += c.toString("utf-8")));
    child.stderr?.on("data", (c: Buffer) => (output += c.toString("utf-8")));
    child.on("error", (err: NodeJS.ErrnoException) => {
      const hint =
        err.code === "ENOENT"
          ? `${executable} was not found: install tierd or set "tierd.executable" to its path`
          : `cannot run ${executable}: ${err.message}`;
      finish({ ok: false, code: null, output: hint });
    });
    child.on("close", (code) => finish({ ok: code === 0, code, output: output.trim() }));
  });
}
