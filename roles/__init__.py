"""The roles of a tierd team: `planner`, `executor` and `orchestrator`, defined apart from how
they run: each is handed a `calls.Caller`. `plan/` holds the plan's schema, validator and graph
algorithms; `models/` the model tiers every call goes through (`model_caller` joins the two);
`prompts` renders the role prompts; `report` builds a task's report."""
