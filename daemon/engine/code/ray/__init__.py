"""Code streams on a Ray cluster: the `ray` executor backend (`[executors] backend = "ray"`).

The daemon stays the control plane: the API, the store, the LangGraph program, every model
call (keys never leave it) and every review. What is heavy in a code stream, its worktree and
the commands run there in the sandbox, moves to a Ray actor on a cluster node:

- `bridge` (in the daemon) starts `bridge_main`, the Ray driver, as a child process, and asks it
  for actors and their calls over a pipe;
- `placement` (in the driver) picks the node with room for a stream: the per-node governor;
- `worker` (on the nodes) is the actor: it makes the worktree from a git bundle, runs the tools
  and commands, and sends back what changed as bundles (`bundles`);
- `sites` (in the daemon) is the `StreamSite` of the stream loop: it fetches each bundle into
  the user's repository before the step that made it is saved, so a stream whose node dies
  goes on on another node from its last saved step.
"""
