// git as the extension uses it: the repository of a workspace folder (for a code task), and a
// file's bytes at a commit (the two sides of a code task's diff). Read-only: nothing here
// changes a repository. No `vscode` import.

import { execFile } from "node:child_process";

/** git's own environment, without the caller's GIT_* variables (a hook's GIT_DIR, ...). */
function gitEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith("GIT_")) {
      env[k] = v;
    }
  }
  return env;
}

function git(cwd: string, args: string[], maxBuffer = 64 * 1024 * 1024): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    execFile(
      "git",
      ["-c", "core.hooksPath=/dev/null", ...args],
      { cwd, env: gitEnv(), encoding: "buffer", maxBuffer, timeout: 30_000 },
      (err, stdout, stderr) => {
        if (err) {
          const detail = Buffer.isBuffer(stderr) ? stderr.toString("utf-8").trim() : "";
          reject(new Error(detail || err.message));
        } else {
          resolve(stdout);
        }
      },
    );
  });
}

/** The top level of the git work tree that holds `dir`, or null when it is not in one. */
export async function workTreeRoot(dir: string): Promise<string | null> {
  try {
    const out = (await git(dir, ["rev-parse", "--show-toplevel"])).toString("utf-8").trim();
    return out || null;
  } catch {
    return null;
  }
}

/** The current branch of a work tree ("main"), or null on a detached HEAD. */
export async function currentBranch(dir: string): Promise<string | null> {
  try {
    const out = (await git(dir, ["symbolic-ref", "--quiet", "--short", "HEAD"])).toString("utf-8").trim();
    return out || null;
  } catch {
    return null;
  }
}

const COMMIT = /^[0-9a-f]{7,64}$/;

/**
 * The bytes of `path` at `commit` in `repo` (as stored: no filters), or null when the commit
 * has no such file. `commit` must be a hex object id, as `task/diff` gives them.
 */
export async function fileAt(repo: string, commit: string, path: string): Promise<Buffer | null> {
  if (!COMMIT.test(commit)) {
    throw new Error(`not a commit id: ${JSON.stringify(commit)}`);
  }
  try {
    return await git(repo, ["cat-file", "blob", `${commit}:${path}`]);
  } catch (err) {
    if (/does not exist|exists on disk, but not in|Not a valid object name|bad file/i.test((err as Error).message)) {
      return null;
    }
    throw err;
  }
}
