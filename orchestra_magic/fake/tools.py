"""How the fake Messages API (`fakeapi`) answers requests that offer tools or ask for thinking.

Deterministic rules, made so a test can see each part of a tool loop work:
- Thinking (`thinking: enabled` or `adaptive`): every answer starts with a `thinking` block whose
  `signature` the fake can check. Sent back altered, or dropped from an assistant turn that used
  tools, the request is refused with a 400, as the real API refuses it.
- Server tools (`web_search_*`, `web_fetch_*`, `code_execution_*`): one per answer, as a
  `server_tool_use` block and its result block, with `usage.server_tool_use` counting it. While
  offered server tools remain unused, the answer stops with `pause_turn` (send it back to go on).
- Custom tools: each offered tool is called once, in order, one per answer (only those the task
  names, when it names any; only the chosen one under `tool_choice: tool`), with arguments made from
  its `input_schema`. A `tool_use` must be answered by a `tool_result` in the next user turn.
- The final text quotes every tool result it was given, so a test can prove results were fed back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

SIMULATED_MARK = "[simulated]"
_SIGNING_KEY = b"orchestra-magic-fake-thinking"
_SERVER_PREFIXES = ("web_search_", "web_fetch_", "code_execution_")
_QUOTE_CHARS = 200


def sign(thinking: str) -> str:
    """A signature only this fake makes: proof that a thinking block came back unaltered."""
    digest = hmac.new(_SIGNING_KEY, thinking.encode(), hashlib.sha256).digest()
    return base64.b64encode(b"fake-signature:" + digest).decode()


def thinking_requested(body: dict[str, Any]) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")


def thinking_block(sentence: str) -> dict[str, Any]:
    text = f"{SIMULATED_MARK} Thinking it through: {sentence}"
    return {"type": "thinking", "thinking": text, "signature": sign(text)}


def _blocks(message: Any) -> list[dict[str, Any]]:
    content = message.get("content") if isinstance(message, dict) else None
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def problem(body: dict[str, Any]) -> str | None:
    """What the real API would refuse in this conversation (thinking and tool pairing), or None."""
    messages = body["messages"]
    last_assistant = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
    for i, message in enumerate(messages):
        blocks = _blocks(message)
        for j, block in enumerate(blocks):
            if block.get("type") == "thinking" and block.get("signature") != sign(str(block.get("thinking"))):
                return f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
        calls = {b.get("id") for b in blocks if b.get("type") == "tool_use"}
        if message.get("role") != "assistant" or not calls:
            continue
        if i == last_assistant and thinking_requested(body) and blocks[0].get("type") != "thinking":
            return (f"messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
                    f"`{blocks[0].get('type')}`. When `thinking` is enabled, a final `assistant` message must "
                    "start with a thinking block")
        answered = {b.get("tool_use_id") for b in _blocks(messages[i + 1])} if i + 1 < len(messages) else set()
        if missing := calls - answered:
            return (f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                    f"{', '.join(sorted(map(str, missing)))}")
    return None


def is_server_tool(tool: dict[str, Any]) -> bool:
    kind = tool.get("type")
    return isinstance(kind, str) and kind.startswith(_SERVER_PREFIXES)


def _offered(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools = body.get("tools")
    return [t for t in tools if isinstance(t, dict)] if isinstance(tools, list) else []


def _used(body: dict[str, Any], kind: str) -> set[str]:
    """Names of the tools the assistant already used (`tool_use` or `server_tool_use` blocks)."""
    names = {str(b.get("name")) for m in body["messages"] if m.get("role") == "assistant"
             for b in _blocks(m) if b.get("type") == kind}
    return names | ({"code_execution"} if "bash_code_execution" in names else set())


def next_tool(body: dict[str, Any], task: str) -> dict[str, Any] | None:
    """The custom tool to call next, or None when every one the rules allow has been called."""
    choice = body.get("tool_choice") if isinstance(body.get("tool_choice"), dict) else {}
    assert isinstance(choice, dict)
    if choice.get("type") == "none":
        return None
    tools = [t for t in _offered(body) if not is_server_tool(t)]
    if choice.get("type") == "tool":
        tools = [t for t in tools if t.get("name") == choice.get("name")]
    named = [t for t in tools if str(t.get("name")) in task]
    used = _used(body, "tool_use")
    return next((t for t in named or tools if t.get("name") not in used), None)


def _value(schema: Any, key: str) -> Any:
    schema = schema if isinstance(schema, dict) else {}
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    values: dict[str, Any] = {"integer": 1, "number": 1.5, "boolean": True, "array": [], "object": {},
                              "null": None}
    return values.get(kind, f"{SIMULATED_MARK} {key}") if isinstance(kind, str) else f"{SIMULATED_MARK} {key}"


def tool_use_block(tool: dict[str, Any], digest: str) -> dict[str, Any]:
    """A call to `tool` with every required argument filled from its schema, by type."""
    schema = tool.get("input_schema") or {}
    props = schema.get("properties") or {}
    arguments = {key: _value(props.get(key), key) for key in schema.get("required", []) if isinstance(key, str)}
    return {"type": "tool_use", "id": f"toolu_fake_{digest[:20]}", "name": tool.get("name", ""), "input": arguments}


@dataclass
class ServerStep:
    """What the fake's simulated server did in one answer."""

    blocks: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)
    more: bool = False  # other offered server tools are still unused: the answer pauses


def server_step(body: dict[str, Any], task: str, digest: str) -> ServerStep:
    pending = [t for t in _offered(body) if is_server_tool(t) and t.get("name") not in _used(body, "server_tool_use")]
    if not pending:
        return ServerStep()
    tool, call_id = pending[0], f"srvtoolu_fake_{digest[:20]}"
    kind, topic = str(tool["type"]), " ".join(task.rsplit("Your task:", 1)[-1].split()[:12])
    usage = {"web_search_requests": 0, "web_fetch_requests": 0}
    if kind.startswith("web_search_"):
        usage["web_search_requests"] = 1
        blocks = _search(call_id, topic)
    elif kind.startswith("web_fetch_"):
        usage["web_fetch_requests"] = 1
        blocks = _fetch(call_id, topic)
    else:
        blocks = _code(call_id, kind)
    return ServerStep(blocks, usage, more=len(pending) > 1)


def _search(call_id: str, topic: str) -> list[dict[str, Any]]:
    results = [{"type": "web_search_result", "title": f"{SIMULATED_MARK} Result {n} for: {topic}",
                "url": f"https://example.com/simulated/{n}", "encrypted_content": f"fake-{n}", "page_age": None}
               for n in (1, 2)]
    return [{"type": "server_tool_use", "id": call_id, "name": "web_search", "input": {"query": topic}},
            {"type": "web_search_tool_result", "tool_use_id": call_id, "content": results}]


def _fetch(call_id: str, topic: str) -> list[dict[str, Any]]:
    url = "https://example.com/simulated/page"
    document = {"type": "document", "title": f"{SIMULATED_MARK} Page about: {topic}", "citations": None,
                "source": {"type": "text", "media_type": "text/plain", "data": f"{SIMULATED_MARK} page text"}}
    return [{"type": "server_tool_use", "id": call_id, "name": "web_fetch", "input": {"url": url}},
            {"type": "web_fetch_tool_result", "tool_use_id": call_id,
             "content": {"type": "web_fetch_result", "url": url, "retrieved_at": None, "content": document}}]


def _code(call_id: str, kind: str) -> list[dict[str, Any]]:
    """Version 20250522 ran Python (`code_execution`); later versions run bash (`bash_code_execution`)."""
    output = f"{SIMULATED_MARK} 42"
    if kind == "code_execution_20250522":
        return [{"type": "server_tool_use", "id": call_id, "name": "code_execution", "input": {"code": "print(42)"}},
                {"type": "code_execution_tool_result", "tool_use_id": call_id,
                 "content": {"type": "code_execution_result", "stdout": output, "stderr": "", "return_code": 0,
                             "content": []}}]
    return [{"type": "server_tool_use", "id": call_id, "name": "bash_code_execution",
             "input": {"command": "echo 42"}},
            {"type": "bash_code_execution_tool_result", "tool_use_id": call_id,
             "content": {"type": "bash_code_execution_result", "stdout": output, "stderr": "", "return_code": 0,
                         "content": []}}]


def with_quotes(text: str, body: dict[str, Any], blocks: list[dict[str, Any]]) -> str:
    """The simulated answer with the tool results in play quoted before its last paragraph."""
    lines = quotes(body, blocks)
    if not lines:
        return text
    head, _, last = text.rpartition("\n\n")
    return f"{head}\n\nFrom the tools:\n" + "\n".join(lines) + f"\n\n{last}"


def written(blocks: list[dict[str, Any]]) -> str:
    """What the model wrote in these blocks (for output tokens): text, thinking, tool inputs."""
    parts = [str(b.get("text") or b.get("thinking") or "") for b in blocks if b["type"] in ("text", "thinking")]
    parts += [json.dumps(b["input"]) for b in blocks if b["type"] in ("tool_use", "server_tool_use")]
    return "".join(parts)


def opening(block: dict[str, Any]) -> dict[str, Any]:
    """A block as its `content_block_start` carries it: the parts that stream in later left empty."""
    empty: dict[str, dict[str, Any]] = {"text": {"text": ""}, "thinking": {"thinking": "", "signature": ""},
                                         "tool_use": {"input": {}}, "server_tool_use": {"input": {}}}
    return {**block, **empty.get(block["type"], {})}


def quotes(body: dict[str, Any], new_blocks: list[dict[str, Any]]) -> list[str]:
    """One line per tool result in the conversation (and in this answer), in order."""
    names: dict[str, str] = {}
    lines = []
    history = [(m.get("role"), b) for m in body["messages"] for b in _blocks(m)]
    for _, block in [*history, *(("assistant", b) for b in new_blocks)]:
        kind = block.get("type")
        if kind in ("tool_use", "server_tool_use"):
            names[str(block.get("id"))] = str(block.get("name"))
        elif kind == "tool_result" or str(kind).endswith("_tool_result"):
            name = names.get(str(block.get("tool_use_id")), "tool")
            failed = " (error)" if block.get("is_error") else ""
            lines.append(f"- {name}{failed}: {_result_text(block)[:_QUOTE_CHARS]}")
    return lines


def _result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # tool_result blocks, or web search results
        return " ".join(str(b.get("text") or b.get("title") or "") for b in content if isinstance(b, dict))
    if isinstance(content, dict):
        inner = content.get("content")
        return str(content.get("stdout") or (inner.get("title") if isinstance(inner, dict) else "") or "")
    return json.dumps(content)
