"""Plans for the simulator's scenarios: one stream spec, the shape every end-to-end test uses."""

from __future__ import annotations

from typing import Any


def stream(id_: str, deps: list[str] | None = None, **kw: Any) -> dict[str, Any]:
    """A valid stream of a plan (what `roles.plan.schema.StreamSpec` accepts), owning
    `area-<id>/`; `kw` overrides any field."""
    return {
        "id": id_,
        "title": f"Stream {id_}",
        "job": f"Do part {id_}.",
        "output_definition": f"The {id_} part.",
        "ownership": [f"area-{id_}/"],
        "depends_on": deps or [],
        "acceptance_check": "It is there.",
        **kw,
    }
