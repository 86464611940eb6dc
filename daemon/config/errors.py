"""The one error of the configuration: a problem with a key, and where it was found."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration problem, with the key and where it was found."""

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        path: str | None = None,
        line: int | None = None,
    ) -> None:
        where = ""
        if path:
            where = f"{path}" + (f", line {line}" if line else "") + ": "
        super().__init__(where + message)
        self.message = message
        self.key = key
        self.path = path
        self.line = line
