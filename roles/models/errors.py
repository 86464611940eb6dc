"""What can go wrong with a model, as one family: `ModelError` and its three kinds.

- `ModelConfigError`: a tier is set up wrongly (a missing model name, an unset key variable);
- `ModelCallError`: every attempt on every model of a tier failed;
- `ModelOutputError`: the answers came, but never parsed as the structure asked for.

Each message names the role (and purpose), the model and the cause, never a key: the engine
ends a stream or a task with it as it is, so a person reading "task failed: ..." knows what to
fix. `role` and `model` are kept as attributes too, for code that wants them.
"""

from __future__ import annotations

__all__ = ["ModelCallError", "ModelConfigError", "ModelError", "ModelOutputError"]


class ModelError(Exception):
    """A model could not give a usable answer; the message says which model, for whom, why."""

    def __init__(self, message: str, *, role: str | None = None, model: str | None = None) -> None:
        super().__init__(message)
        self.role = role
        self.model = model


class ModelConfigError(ModelError, ValueError):
    """A model tier is configured wrongly; the message names the key."""


class ModelCallError(ModelError, RuntimeError):
    """Every attempt on every model of a tier failed."""


class ModelOutputError(ModelError, ValueError):
    """The model's answer never parsed as the requested structure, even after repair requests.

    `text` is the last answer. A ValueError, as a structure that does not validate is.
    """

    def __init__(
        self, message: str, text: str = "", *, role: str | None = None, model: str | None = None
    ) -> None:
        super().__init__(message, role=role, model=model)
        self.text = text
