"""The dashboard's files (HTML, CSS, JavaScript modules), read once and served from memory.

Only the files found under `static/` when the daemon starts can be served: a request names an
entry of that index, never a path, so nothing outside the directory is reachable. Reading at
start keeps file I/O off the event loop; each file carries an ETag so a browser revalidates
cheaply and picks up a new version after an upgrade.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["STATIC_DIR", "Asset", "Assets"]

STATIC_DIR = Path(__file__).with_name("static")
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


class Assets:
    """Every servable file under `root`, by its path relative to it ("js/app.js")."""

    def __init__(self, root: Path = STATIC_DIR) -> None:
        self._files: dict[str, Asset] = {}
        for path in sorted(root.rglob("*")):
            media_type = _TYPES.get(path.suffix)
            if media_type is None or not path.is_file():
                continue
            body = path.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            self._files[path.relative_to(root).as_posix()] = Asset(body, media_type, etag)

    def get(self, name: str) -> Asset | None:
        return self._files.get(name)

    def names(self) -> list[str]:
        return sorted(self._files)
