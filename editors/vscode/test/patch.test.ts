// A code task's result file by file: the patch task/diff gives (recorded from a real code task)
// and git's other header forms (renames, deletions, quoted paths, binary files).

import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";

import { diffFiles, parsePatch, unquoteGitPath } from "../src/client/patch";

const PATCH = fs.readFileSync(path.join(__dirname, "../../test/fixtures/code-task.patch"), "utf-8");

test("the recorded patch: two added files and a modified one", () => {
  assert.deepEqual(parsePatch(PATCH), [
    { oldPath: null, newPath: "farewell.py", status: "added", binary: false, insertions: 2, deletions: 0 },
    { oldPath: "greet.py", newPath: "greet.py", status: "modified", binary: false, insertions: 1, deletions: 1 },
    { oldPath: null, newPath: "tests/test_greet.py", status: "added", binary: false, insertions: 4, deletions: 0 },
  ]);
});

test("task/diff's file list wins for the counts; the patch gives the sides", () => {
  const files = diffFiles({
    files: [
      { path: "farewell.py", insertions: 2, deletions: 0 },
      { path: "greet.py", insertions: 1, deletions: 1 },
      { path: "missing-from-a-truncated-patch.py", insertions: 5, deletions: null },
    ],
    patch: PATCH,
  });
  assert.deepEqual(
    files.map((f) => [f.oldPath, f.newPath, f.status, f.insertions, f.deletions]),
    [
      [null, "farewell.py", "added", 2, 0],
      ["greet.py", "greet.py", "modified", 1, 1],
      ["missing-from-a-truncated-patch.py", "missing-from-a-truncated-patch.py", "modified", 5, 0],
    ],
  );
});

test("renames, deletions, quoted paths, binary files and a removed '-- ' line", () => {
  const patch = [
    "diff --git a/old name.py b/new name.py",
    "similarity index 90%",
    "rename from old name.py",
    "rename to new name.py",
    "index 1..2 100644",
    "--- a/old name.py",
    "+++ b/new name.py",
    "@@ -1,2 +1,2 @@",
    "--- a SQL comment, removed",
    "+++ not a header either",
    " same",
    "diff --git a/gone.txt b/gone.txt",
    "deleted file mode 100644",
    "index 3..0",
    "--- a/gone.txt",
    "+++ /dev/null",
    "@@ -1 +0,0 @@",
    "-bye",
    'diff --git "a/caf\\303\\251 \\"x\\".md" "b/caf\\303\\251 \\"x\\".md"',
    "index 4..5 100644",
    '--- "a/caf\\303\\251 \\"x\\".md"',
    '+++ "b/caf\\303\\251 \\"x\\".md"',
    "@@ -1 +1 @@",
    "-a",
    "+b",
    "diff --git a/logo.png b/logo.png",
    "new file mode 100644",
    "index 0..6",
    "Binary files /dev/null and b/logo.png differ",
    "",
  ].join("\n");
  assert.deepEqual(parsePatch(patch), [
    { oldPath: "old name.py", newPath: "new name.py", status: "renamed", binary: false, insertions: 1, deletions: 1 },
    { oldPath: "gone.txt", newPath: null, status: "deleted", binary: false, insertions: 0, deletions: 1 },
    { oldPath: 'café "x".md', newPath: 'café "x".md', status: "modified", binary: false, insertions: 1, deletions: 1 },
    { oldPath: null, newPath: "logo.png", status: "added", binary: true, insertions: 0, deletions: 0 },
  ]);
  assert.equal(unquoteGitPath('"tab\\there"'), "tab\there");
  assert.equal(unquoteGitPath("plain"), "plain");
});
