"""How the terminal views name and colour things: each state's style and mark, the roles in
the order they are listed, and numbers (tokens, dollars, seconds) as the views write them."""

from __future__ import annotations

__all__ = ["MARK", "ROLES", "STYLE", "fmt_s", "fmt_tokens", "fmt_usd", "plural", "short_model"]

ROLES = ("planner", "orchestrator", "executor")
STYLE = {
    "queued": "dim",
    "pending": "dim",
    "planning": "cyan",
    "running": "yellow",
    "reviewing": "cyan",
    "merging": "cyan",
    "waiting": "magenta",
    "accepted": "green",
    "fixed": "green",
    "failed": "red",
    "completed": "bold green",
    "canceled": "red",
    "input_required": "bold magenta",
    "awaiting_approval": "bold magenta",
    "accept": "green",
    "fix": "green",
    "redo": "yellow",
    "escalate": "magenta",
}
MARK = {
    "pending": "·",
    "running": "▸",
    "reviewing": "◎",
    "waiting": "?",
    "accepted": "✓",
    "fixed": "✓",
    "failed": "✗",
}


def short_model(model: str) -> str:
    """'openai/gpt-5-mini' -> 'gpt-5-mini': the provider prefix is noise in a narrow column."""
    return model.rsplit("/", 1)[-1] if model else ""


def fmt_tokens(n: float) -> str:
    return f"{int(n):,}"


def fmt_usd(x: float | None) -> str:
    """Dollars; "unknown" when a model's price is not known (never $0, which reads as free)."""
    if x is None:
        return "unknown"
    return f"${x:.4f}" if x < 100 else f"${x:,.2f}"


def fmt_s(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 600 else f"{seconds / 60:.0f}m"


def plural(n: int, word: str) -> str:
    """'1 call', '2 calls', '0 calls'."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
