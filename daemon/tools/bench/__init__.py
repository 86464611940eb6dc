"""`tierd bench`: tierd against a sequential agent and LangGraph `Send`, on the simulator.

`run` drives a run; `workloads` says what runs, `harness` starts and talks to the daemon,
`compare` runs one workload three ways, `figures` computes its figures, `micro` and
`governor_reaction` measure the API and the governor once per run, `measure` holds the
instruments, `report` prints the tables and the targets, `baselines` are the two baselines.
The code workload: `code_repo` generates its repository, `code_workload` runs it through the
daemon, `code_figures` computes its figures, `code_overhead` replays each stream's git and
sandbox work with tierd's own classes, `code_ray` runs it again on a three-node local Ray
cluster through a second daemon and sets it beside the local run, `code_report` prints its
rows and tables.
"""
