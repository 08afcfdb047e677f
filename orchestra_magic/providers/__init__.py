"""Providers: where agent calls go. `make_provider` turns a name into one without importing the others."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .base import AgentRequest, Completion, Provider, WorkerResult
from .python import PythonProvider

PROVIDERS = ("anthropic", "offline", "python")

__all__ = ["PROVIDERS", "AgentRequest", "Completion", "Provider", "PythonProvider", "WorkerResult", "make_provider"]


def make_provider(provider: str | Provider, **options: Any) -> Provider:
    """A `Provider` instance as is, or one made from its name (`anthropic`, `offline`, `python`)."""
    if isinstance(provider, Provider):
        return provider
    if provider == "anthropic":
        from .anthropic.provider import AnthropicProvider

        return AnthropicProvider(**options)
    if provider == "offline":
        from .anthropic.provider import OfflineProvider

        return OfflineProvider(**options)
    if provider == "python":
        raise ConfigError(
            "the python provider runs your own functions: pass provider=om.PythonProvider(worker=fn) from Python"
        )
    raise ConfigError(f"unknown provider {provider!r}; choose one of {', '.join(PROVIDERS)}")
