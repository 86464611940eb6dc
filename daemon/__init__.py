"""tierd: a local daemon that runs hierarchical teams of AI agents in parallel."""

__version__ = "0.1.0"
