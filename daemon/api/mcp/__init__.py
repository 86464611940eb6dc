"""MCP (Model Context Protocol) on the daemon: streamable HTTP at /mcp, over the one service.

Editors and coding agents (Claude Code, Codex, Cursor, VS Code) hand tierd a task through
tools; results and reports are also resources. Nothing here owns state: every tool calls the
service, and waiting follows the store's event feed.

- `server`: the MCPServer, its route and its lifespan;
- `tools`: the tools and what a model is told about each;
- `resources`: task results and reports as resources;
- `progress`: the bounded wait and the progress a waiting model reads;
- `following`: wait_task's call: the bounded wait, and asking the user when the task needs them;
- `asking`: what waits for the human as one elicitation form, and how a reply is recorded;
- `outcome`: what submit_task answers, at once and once the task ended;
- `tasks_ext`, `task_view`: tierd's tasks as MCP tasks (the io.modelcontextprotocol/tasks
  extension);
- `errors`: service errors as tool errors a model can act on.
"""
