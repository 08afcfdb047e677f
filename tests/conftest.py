"""Shared fixtures. Tests never reach the real API: the key is removed and the endpoint is unset."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_real_api(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "ORCHESTRA_PROVIDER",
                 "ORCHESTRA_ROOT", "ORCHESTRA_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)

