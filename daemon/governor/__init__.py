"""The concurrency governor: agent slots under a limit that follows memory pressure.

Import `Governor` and `ConcurrencySettings` from `daemon.governor.governor`, the memory
sources from `daemon.governor.memory`.
"""
