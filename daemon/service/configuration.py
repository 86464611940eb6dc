"""The daemon's configuration as clients see and change it: `config/get` and `config/set`.

`Configuration` holds the configuration in effect; the other parts of the service read it
from here on every use, so a value set through the API applies to the next task without a
restart (except the tables read only at start, which say so in config/default.toml).
"""

from __future__ import annotations

from typing import Any

from daemon.config.layers import Config, ConfigError, check_value, load_config, set_user_value
from daemon.home.paths import Homes
from daemon.service.errors import InvalidParams
from daemon.service.params import MAX_INT64, ConfigGetParams, ConfigSetParams
from daemon.service.ports import Engine
from daemon.service.results import ConfigDocument, ConfigEntry
from daemon.service.task_config import check_routing, task_settings


def _check_int64(key: str, value: Any) -> None:
    """Refuse an integer (alone or in a list) beyond a signed 64-bit number, whatever the key:
    no setting needs one, and it would overflow where it is used, far from the input."""
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, list):
            _check_int64(key, item)
        elif isinstance(item, int) and not isinstance(item, bool) and abs(item) > MAX_INT64:
            raise InvalidParams(
                f"{key}: an integer of {len(str(abs(item)))} digits is out of range (no "
                f"setting takes one beyond -{MAX_INT64} to {MAX_INT64})",
                {"field": "value", "key": key, "max": MAX_INT64},
            )


class Configuration:
    """The configuration in effect, read and written through the user's global file."""

    def __init__(self, current: Config, homes: Homes, engine: Engine) -> None:
        self.current = current
        self._homes = homes
        self._engine = engine

    async def get(self, params: ConfigGetParams) -> ConfigDocument | ConfigEntry:
        config = self.current
        try:
            if params.key is None:
                return ConfigDocument(
                    config=config.as_dict(),
                    sources={k: config.source_of(k) for k in config.values},
                )
            return ConfigEntry(
                key=params.key, value=config.get(params.key), source=config.source_of(params.key)
            )
        except ConfigError as exc:
            raise InvalidParams(str(exc), {"field": "key", "key": params.key}) from exc

    async def set(self, params: ConfigSetParams) -> ConfigEntry:
        _check_int64(params.key, params.value)
        try:
            value = check_value(params.key, params.value, self.current.defaults)
            if params.key.startswith("models."):
                # A model litellm cannot route is refused now, not after a planner was paid.
                candidate = {**task_settings(self.current), params.key: value}
                await check_routing(self._engine, candidate, wait=True)
            if params.key == "concurrency.ceiling":
                # Applied first: a ceiling the governor refuses is never written to the file.
                self._engine.set_ceiling(int(value))
            set_user_value(self._homes.config_file, params.key, value, self.current.defaults)
            self.current = load_config(self._homes.config_file)
        except ConfigError as exc:
            raise InvalidParams(
                str(exc), {"field": "value" if exc.key else "key", "key": params.key}
            ) from exc
        except ValueError as exc:
            raise InvalidParams(
                f"{params.key}: {exc}", {"field": "value", "key": params.key}
            ) from exc
        return ConfigEntry(key=params.key, value=value, source=self.current.source_of(params.key))
