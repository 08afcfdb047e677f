"""What an endpoint accepts: the features a request may use, as a profile per cloud or server.

Two kinds of feature, handled two ways:
- **refused before the run** — what would change what the run does: `batches` (a `mode: batch` role)
  and `server_tools` (a spec naming `web_search`, `web_fetch` or `code_execution`). Without them the run
  cannot do what the spec says, so `check` stops it with one line naming the key.
- **left out of the request** — what only tunes the answer or the pacing: `cache_control` (prompt
  caching), `thinking`, `effort`, `structured_outputs`, and reading `rate_limit_headers`. A server that
  does not know them would answer 400 to every agent; the provider simply does not send them.

The clouds' profiles list what each offers through the installed SDK (its Bedrock and Vertex clients
refuse the Batch API themselves, and its Foundry client has no `batches`); an Anthropic-compatible
server (`CompatibleProvider`) starts with none of them, and the user turns on what their server takes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ...errors import ConfigError
from ...tools.catalog import SERVER_TOOLS, server_tool

FEATURES = ("cache_control", "thinking", "effort", "structured_outputs", "server_tools", "batches",
            "rate_limit_headers")


@dataclass(frozen=True, slots=True)
class Profile:
    """One endpoint's features (`FEATURES`) and, when `server_tools` is among them, which server tools."""

    name: str
    features: frozenset[str]
    server_tools: frozenset[str] = frozenset(SERVER_TOOLS)

    def has(self, feature: str) -> bool:
        return feature in self.features


_ALL = frozenset(FEATURES)
# The server tools each cloud lists for Claude; edit here when a cloud adds one.
PROFILES = {
    "anthropic": Profile("anthropic", _ALL),
    "bedrock": Profile("bedrock", _ALL - {"batches", "server_tools"}, frozenset()),
    "vertex": Profile("vertex", _ALL - {"batches"}, frozenset({"web_search"})),
    "foundry": Profile("foundry", _ALL - {"batches"}),
}


def compatible_profile(features: Iterable[str] = ()) -> Profile:
    """An Anthropic-compatible server's profile: only the features named (none by default)."""
    chosen = frozenset(features)
    unknown = sorted(chosen - _ALL)
    if unknown:
        raise ConfigError(f"unknown feature {unknown[0]!r} for the compatible provider; "
                          f"choose from {', '.join(FEATURES)}")
    return Profile("compatible", chosen)


def refusal(profile: Profile, role: str, mode: str, tools: Iterable[str]) -> str | None:
    """Why a role's settings cannot run on this endpoint (one line), or None when they can."""
    if mode == "batch" and not profile.has("batches"):
        return (f"the {profile.name} provider cannot send the {role}s' mode: batch (no Message Batches API "
                f"there through the anthropic SDK); set mode: messages")
    for name in tools:
        tool = server_tool(name)
        if tool is not None and not (profile.has("server_tools") and tool["name"] in profile.server_tools):
            offered = ", ".join(sorted(profile.server_tools)) if profile.has("server_tools") else "none"
            return (f"the {profile.name} provider does not offer the server tool {name!r} the {role}s use "
                    f"(server tools there: {offered}); drop it from tools:")
    return None
