"""The errors of the configuration: a problem with a key, and where it was found; and a global
file that cannot be written (a read-only home, a full disk)."""

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


class ConfigNotWritable(ConfigError):
    """The global file, or its directory, cannot be written; nothing was changed.

    `errno` is the system's reason (EROFS, EACCES, ENOSPC, ...): a caller may word a full
    disk (ENOSPC, EDQUOT) apart from a home it may not write at all.
    """

    def __init__(self, path: str, reason: str, errno: int | None = None) -> None:
        super().__init__(f"cannot write the config file: {reason}", path=path)
        self.errno = errno
