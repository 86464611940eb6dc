"""Layered configuration: the schema from `config/default.toml`, the layers over it, and the
user's global file.

Import the configuration's names from `daemon.config.layers` (the front door).
"""
