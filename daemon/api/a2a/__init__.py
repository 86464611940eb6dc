"""A2A v1.0 on the daemon: the agent card and the JSON-RPC binding at /a2a, over the one service.

Other agents hand tierd work as A2A tasks. An A2A task is a tierd task (same id, same store),
and its context id is its task id: nothing is kept here, so tasks, and the conversations that
continue them by task or context id, survive a restart as tierd's do.

- `card`: the agent card at /.well-known/agent-card.json;
- `mapping`: tierd tasks as A2A tasks (states, status messages, artifacts, history);
- `intents`: what an incoming message asks for (a new task, answers, a decision);
- `handler`: the SDK's request handler, implemented over the service and the event feed;
- `routes`: the routes the app mounts.
"""
