// A code task's result as files: what `task/diff` answers (its file list and its git patch)
// turned into one entry per file with the path on each side, so each file can be opened in
// the editor's own diff view (base side at `base_commit`, result side at `head`). No `vscode`.

export type FileStatus = "added" | "deleted" | "modified" | "renamed";

export interface DiffFile {
  /** The path on the base side (null for an added file). */
  oldPath: string | null;
  /** The path on the result side (null for a deleted file). */
  newPath: string | null;
  status: FileStatus;
  binary: boolean;
  insertions: number;
  deletions: number;
}

/** A path as git writes it in a patch header: plain, or C-quoted ("a/sp\303\251cial"). */
export function unquoteGitPath(text: string): string {
  if (!text.startsWith('"')) {
    return text;
  }
  const bytes: number[] = [];
  const escapes: Record<string, number> = { a: 7, b: 8, t: 9, n: 10, v: 11, f: 12, r: 13, '"': 34, "\\": 92 };
  for (let i = 1; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      break;
    }
    if (c !== "\\") {
      bytes.push(...Buffer.from(c, "utf-8"));
      continue;
    }
    const next = text[i + 1];
    if (/[0-7]/.test(next)) {
      bytes.push(parseInt(text.slice(i + 1, i + 4), 8));
      i += 3;
    } else {
      bytes.push(escapes[next] ?? next.charCodeAt(0));
      i += 1;
    }
  }
  return Buffer.from(bytes).toString("utf-8");
}

function stripSide(path: string, side: "a/" | "b/"): string | null {
  const p = unquoteGitPath(path.trim());
  if (p === "/dev/null") {
    return null;
  }
  return p.startsWith(side) ? p.slice(side.length) : p;
}

/** Split a "diff --git a/X b/Y" line's rest into its two paths (quoted or not). */
function gitLinePaths(rest: string): [string, string] | null {
  if (rest.startsWith('"')) {
    const end = rest.search(/[^\\]" /);
    if (end < 0) {
      return null;
    }
    return [rest.slice(0, end + 2), rest.slice(end + 3)];
  }
  // Unquoted: " b/" separates the two when both sides name the same path (the usual case).
  const half = (rest.length - 1) / 2;
  if (Number.isInteger(half) && rest.slice(2, half) === rest.slice(half + 3)) {
    return [rest.slice(0, half), rest.slice(half + 1)];
  }
  const at = rest.indexOf(" b/");
  return at < 0 ? null : [rest.slice(0, at), rest.slice(at + 1)];
}

/** The files of a git patch, in patch order. */
export function parsePatch(patch: string): DiffFile[] {
  const files: DiffFile[] = [];
  let cur: DiffFile | null = null;
  let inHunk = false;
  for (const line of patch.split("\n")) {
    if (line.startsWith("diff --git ")) {
      const paths = gitLinePaths(line.slice("diff --git ".length));
      cur = {
        oldPath: paths ? stripSide(paths[0], "a/") : null,
        newPath: paths ? stripSide(paths[1], "b/") : null,
        status: "modified",
        binary: false,
        insertions: 0,
        deletions: 0,
      };
      files.push(cur);
      inHunk = false;
      continue;
    }
    if (cur === null) {
      continue;
    }
    if (line.startsWith("@@")) {
      inHunk = true;
    } else if (inHunk) {
      // A hunk's lines: a removed "-- x" reads "--- x" and must not be taken for a header.
      if (line.startsWith("+")) {
        cur.insertions += 1;
      } else if (line.startsWith("-")) {
        cur.deletions += 1;
      }
    } else if (line.startsWith("new file mode")) {
      cur.status = "added";
      cur.oldPath = null;
    } else if (line.startsWith("deleted file mode")) {
      cur.status = "deleted";
      cur.newPath = null;
    } else if (line.startsWith("rename from ")) {
      cur.status = "renamed";
      cur.oldPath = unquoteGitPath(line.slice("rename from ".length));
    } else if (line.startsWith("rename to ")) {
      cur.status = "renamed";
      cur.newPath = unquoteGitPath(line.slice("rename to ".length));
    } else if (line.startsWith("--- ")) {
      const p = stripSide(line.slice(4), "a/");
      if (p === null) {
        cur.status = "added";
      }
      cur.oldPath = p;
    } else if (line.startsWith("+++ ")) {
      const p = stripSide(line.slice(4), "b/");
      if (p === null) {
        cur.status = "deleted";
      }
      cur.newPath = p;
    } else if (line.startsWith("Binary files ") || line === "GIT binary patch") {
      cur.binary = true;
    }
  }
  return files;
}

/**
 * The files of a `task/diff` answer: each of its `files` with the sides from its patch. A file
 * the patch does not show (a truncated patch) is taken as modified, on the same path.
 */
export function diffFiles(diff: { files?: Array<{ path: string; insertions?: number | null; deletions?: number | null }>; patch?: string }): DiffFile[] {
  const fromPatch = parsePatch(diff.patch ?? "");
  const byPath = new Map<string, DiffFile>();
  for (const f of fromPatch) {
    byPath.set((f.newPath ?? f.oldPath) as string, f);
  }
  const listed = diff.files ?? [];
  if (!listed.length) {
    return fromPatch;
  }
  return listed.map((f) => {
    const found = byPath.get(f.path);
    const base: DiffFile = found ?? {
      oldPath: f.path,
      newPath: f.path,
      status: "modified",
      binary: false,
      insertions: 0,
      deletions: 0,
    };
    return {
      ...base,
      insertions: f.insertions ?? base.insertions,
      deletions: f.deletions ?? base.deletions,
    };
  });
}
