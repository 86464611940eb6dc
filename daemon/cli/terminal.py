"""Text from the daemon made harmless for the user's terminal.

Goals, plans, model outputs, questions, errors and config values come from people and models
the user does not control (a goal pasted from a web page, a model that echoes a prompt
injection, a project's config file). Printed raw, `ESC ] 0 ; ... BEL` retitles the terminal,
`ESC [ 2 J` clears it, and other sequences move the cursor, rewrite lines or, on some
terminals, answer back into the input. So every terminal view prints daemon text only
through `clean` (or `clean_data` for a whole answer): C0 and C1 control characters and DEL
become visible escapes (`\\x1b`, `\\x00`, `\\x9b`), except newline and tab, which text needs.
`console()` gives a rich Console that reads no markup and no emoji codes in strings, so a
`[link=...]` or `[on red]` in a title is shown, not obeyed; and `--json` output needs none of
this, since JSON escapes control characters itself.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["clean", "clean_data", "console"]

#: C0 controls but tab and newline, DEL, and the C1 controls (U+0080..U+009F).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _visible(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def clean(text: object) -> str:
    """`text` as a string whose control characters (but newline and tab) are shown as `\\xNN`."""
    return _CONTROL.sub(_visible, text if isinstance(text, str) else str(text))


def clean_data(value: Any) -> Any:
    """A JSON value from the daemon with every string in it (keys too) passed through `clean`."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return {clean(k) if isinstance(k, str) else k: clean_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_data(v) for v in value]
    return value


def console(*, stderr: bool = False) -> Console:
    """A rich Console for daemon text: strings are never read as markup or emoji codes."""
    from rich.console import Console

    return Console(stderr=stderr, markup=False, emoji=False)
