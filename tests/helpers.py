"""Small builders shared by the tests."""

from __future__ import annotations

from typing import Any


def make_spec(domains: dict[str, int], **settings: Any) -> dict[str, Any]:
    """A spec dict with `n` workers per domain, ids `<domain>-<i>`."""
    return {
        **settings,
        "domains": [
            {"name": name, "coordinator": f"Synthesise {name}.",
             "workers": [{"task": f"Task {i} of {name}."} for i in range(1, n + 1)]}
            for name, n in domains.items()
        ],
    }
