"""`tierd config show`: the effective configuration as text, each key with its source."""

from __future__ import annotations

import tomlkit

from daemon.config.effective import Config


def format_show(config: Config) -> str:
    """`tierd config show` as text: `key = value  # source`, one key a line, TOML values."""
    rows = [(k, tomlkit.item(v).as_string(), s) for k, v, s in config.rows()]
    width = max(len(k) + len(v) + 3 for k, v, _ in rows)
    return "\n".join(f"{f'{k} = {v}':<{width}}  # {s}" for k, v, s in rows) + "\n"
