"""Providers: where agent calls go. `make_provider` turns a name into one without importing the others."""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError
from .base import AgentRequest, Completion, Provider, WorkerResult
from .python import PythonProvider

PROVIDERS = ("anthropic", "offline", "python", "bedrock", "vertex", "foundry", "compatible")
_CLOUDS = {"bedrock": "BedrockProvider", "vertex": "VertexProvider", "foundry": "FoundryProvider"}

__all__ = ["PROVIDERS", "AgentRequest", "Completion", "Provider", "PythonProvider", "WorkerResult", "make_provider"]


def make_provider(provider: str | Provider, **options: Any) -> Provider:
    """A `Provider` instance as is, or one made from its name (`PROVIDERS`). By name, `compatible` takes
    its features from `ORCHESTRA_COMPATIBLE_FEATURES` (comma-separated; none when unset)."""
    if isinstance(provider, Provider):
        return provider
    if provider == "anthropic":
        from .anthropic.provider import AnthropicProvider

        return AnthropicProvider(**options)
    if provider == "offline":
        from .anthropic.provider import OfflineProvider

        return OfflineProvider(**options)
    if provider in _CLOUDS:
        from .anthropic import clouds

        cloud: type[Provider] = getattr(clouds, _CLOUDS[provider])
        return cloud(**options)
    if provider == "compatible":
        from .anthropic.clouds import CompatibleProvider

        listed = os.environ.get("ORCHESTRA_COMPATIBLE_FEATURES", "")
        features = [f.strip() for f in listed.split(",") if f.strip()]
        return CompatibleProvider(**{"features": features, **options})
    if provider == "python":
        raise ConfigError(
            "the python provider runs your own functions: pass provider=om.PythonProvider(worker=fn) from Python"
        )
    raise ConfigError(unknown_provider(provider, PROVIDERS))


def unknown_provider(name: str, known: Sequence[str]) -> str:
    """The one line for a provider name that names nothing: the likely one meant, and the other way in."""
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return (f"unknown provider {name!r}; {hint}choose one of {', '.join(PROVIDERS)}, or pass a Provider object "
            "(in a notebook, --provider NAME also takes a variable holding one)")
