// The two sides of a diff read from a real git repository, and the repository of a folder.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";

import { currentBranch, fileAt, workTreeRoot } from "../src/client/git";
import { tmpDir } from "./helpers";

function git(cwd: string, ...args: string[]): string {
  return execFileSync(
    "git",
    ["-c", "user.name=Test", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false", ...args],
    { cwd, encoding: "utf-8" },
  ).trim();
}

test("a file at a commit, a file the commit lacks, and a bad commit id", async () => {
  const repo = fs.realpathSync(tmpDir());
  git(repo, "init", "-q", "-b", "main");
  fs.mkdirSync(path.join(repo, "src"));
  fs.writeFileSync(path.join(repo, "src", "a b.py"), "VALUE = 1\n");
  git(repo, "add", "-A");
  git(repo, "commit", "-q", "-m", "base");
  const base = git(repo, "rev-parse", "HEAD");
  fs.writeFileSync(path.join(repo, "src", "a b.py"), "VALUE = 2\n");
  fs.writeFileSync(path.join(repo, "new.txt"), "new\n");
  git(repo, "add", "-A");
  git(repo, "commit", "-q", "-m", "change");
  const head = git(repo, "rev-parse", "HEAD");
  fs.writeFileSync(path.join(repo, "src", "a b.py"), "VALUE = 3 (uncommitted)\n");

  assert.equal((await fileAt(repo, base, "src/a b.py"))?.toString(), "VALUE = 1\n");
  assert.equal((await fileAt(repo, head, "src/a b.py"))?.toString(), "VALUE = 2\n");
  assert.equal(await fileAt(repo, base, "new.txt"), null);
  await assert.rejects(fileAt(repo, "HEAD; rm -rf /", "x"), /not a commit id/);
  await assert.rejects(fileAt(repo, "--output=/tmp/x", "x"), /not a commit id/);

  assert.equal(await workTreeRoot(path.join(repo, "src")), repo);
  assert.equal(await workTreeRoot(tmpDir()), null);
  assert.equal(await currentBranch(repo), "main");
  git(repo, "checkout", "-q", "--detach");
  assert.equal(await currentBranch(repo), null);
});
