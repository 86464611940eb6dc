"""The engine: runs each task's workflow, durably, under the daemon-wide governor.

- `runner`: one asyncio task per live tierd task; starts, resumes, cancels, wakes them;
  `loading` (the engine imported in a thread, once), `leases` (several daemons on one
  store: leases renewed, a dead daemon's tasks taken over);
- `workflow`: the LangGraph program (entrypoint, checkpointer) and `task_run`, what it does
  for one task: plan -> streams -> conflict review -> merge (-> approval);
- the parts of a run: `settings` (the task's typed settings), `gateway` (the memoised,
  governed model caller) and `usage` (its usage log), `lifecycle` (task state moves),
  `streams` (the streams in memory and in the store), `scheduler` (the DAG, splits),
  `stream_work` (execute and review, round after round), `human` (questions, approval,
  attention), `conflicts` (outputs checked together, redos), `merge` (merge and approval
  gate), `ending` (failed or canceled, with a partial report);
- `notify`: the notification hook;
- `disk_full` (a full disk: recognised, waited out) and `checkpoints` (the checkpoint file,
  checked before any task runs on it; `checkpoints_pg` on a PostgreSQL store).
"""
