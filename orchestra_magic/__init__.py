"""orchestra_magic: run 30 to 1,000+ LLM agents from a notebook without drowning it in their output.

Workers write their results to files, one coordinator per domain reads them and writes a synthesis,
and you get back only the coordinators' short summaries (a DataFrame). In a notebook:

    %load_ext orchestra_magic
    %%orchestrate --provider offline
    <spec>

From Python: `orchestra_magic.run(spec)`, `await orchestra_magic.arun(spec)`, `orchestra_magic.load_run(path)`.
Heavy modules (pandas, anthropic, aiohttp, ipywidgets) load only when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    AgentError,
    ConfigError,
    OrchestraError,
    OrchestraWarning,
    RunFolderError,
    SpecError,
    TransientAgentError,
    UsageError,
)

if TYPE_CHECKING:
    from .api import RunOptions, arun
    from .dryrun import Plan, plan
    from .engine.retry import RetryPolicy
    from .live import RunHandle, retry_failed, run, start
    from .providers import AgentRequest, Completion, Provider, PythonProvider
    from .providers.anthropic.clouds import BedrockProvider, CompatibleProvider, FoundryProvider, VertexProvider
    from .providers.anthropic.provider import AnthropicProvider, OfflineProvider
    from .results import Run, list_runs, load_run
    from .spec.load import load_spec
    from .spec.model import Spec
    from .tools.context import workspace

__version__ = "0.1.0"

_LAZY = {
    "run": "live", "arun": "api", "plan": "dryrun", "Plan": "dryrun", "RunOptions": "api",
    "start": "live", "RunHandle": "live", "retry_failed": "live",
    "list_runs": "results", "RetryPolicy": "engine.retry",
    "Run": "results", "load_run": "results", "Spec": "spec.model", "load_spec": "spec.load",
    "AgentRequest": "providers", "Completion": "providers", "Provider": "providers", "PythonProvider": "providers",
    "AnthropicProvider": "providers.anthropic.provider", "OfflineProvider": "providers.anthropic.provider",
    "BedrockProvider": "providers.anthropic.clouds", "VertexProvider": "providers.anthropic.clouds",
    "FoundryProvider": "providers.anthropic.clouds", "CompatibleProvider": "providers.anthropic.clouds",
    "workspace": "tools.context",
}

__all__ = [
    "AgentError",
    "AgentRequest",
    "AnthropicProvider",
    "BedrockProvider",
    "CompatibleProvider",
    "Completion",
    "ConfigError",
    "FoundryProvider",
    "OfflineProvider",
    "OrchestraError",
    "OrchestraWarning",
    "Plan",
    "Provider",
    "PythonProvider",
    "RetryPolicy",
    "Run",
    "RunFolderError",
    "RunHandle",
    "RunOptions",
    "Spec",
    "SpecError",
    "TransientAgentError",
    "UsageError",
    "VertexProvider",
    "arun",
    "list_runs",
    "load_ipython_extension",
    "load_run",
    "load_spec",
    "plan",
    "retry_failed",
    "run",
    "start",
    "unload_ipython_extension",
    "workspace",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'orchestra_magic' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext orchestra_magic`: registers `%%orchestrate` and its line magics."""
    from .magic import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from .magic import unload_ipython_extension as unload

    unload(ipython)
