"""Code tasks: a stream works in a git worktree of its own, with real tools, in a sandbox.

One module one idea:
- `process`: run a subprocess in its own process group with a time limit and bounded output.
- `git`: run git on a repository without touching the user's working tree or index.
- `repository`: check a submitted `repo` / `base`, snapshot uncommitted changes.
- `worktrees`: a stream's worktree and branch; merge of dependencies; commit; cleanup, reconcile.
- `preparation`: make a fresh worktree runnable (`.worktreeinclude`, `link_dirs`, secrets).
- `paths`: confine a model-given path to the worktree; gitignore-like path globs.
- `sandbox`: run a command under bubblewrap (read-only root, worktree writable, no network).
- `tools`: the executor's tools as plain functions over a worktree.
- `toolspec`: the tools' arguments, their OpenAI function-calling schemas, and dispatch by name.
"""
