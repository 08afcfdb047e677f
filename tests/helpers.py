"""Small builders shared by the tests."""

from __future__ import annotations

import time
from pathlib import Path
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


def first_output(root: Path, timeout: float = 60) -> Path:
    """Wait (bounded) until some run under `root` has a finished worker; return that run's folder."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(root.glob("*/workers/*.md"))
        if found:
            return found[0].parent.parent
        time.sleep(0.05)
    raise AssertionError(f"no worker finished within {timeout:g} s")
