"""Typed answers in the engine: an answer checked against its role's `output`, and the texts made of it.

Kept apart from the scheduler, which only asks: is this answer typed, does it fit, what goes in the
`.md`, where does a coordinator's summary come from.
"""

from __future__ import annotations

from typing import Any

from ..errors import TransientAgentError
from ..providers.base import AgentRequest, Completion
from ..spec.answers import InvalidAnswer, parse_answer, render_answer


def typed_answer(request: AgentRequest, completion: Completion) -> dict[str, Any] | None:
    """The answer's JSON where the role declares an `output`. One that does not fit is a failed attempt
    (retried at once, as the next answer may fit), which keeps what it was billed for."""
    if request.output is None:
        return None
    try:
        return parse_answer(completion.text, request.output)
    except InvalidAnswer as exc:
        error = TransientAgentError(str(exc), retry_after=0.0)
        error.spent = completion
        raise error from None


def answer_text(completion: Completion, answer: dict[str, Any] | None, *, coordinator: bool) -> str:
    """What goes in the agent's `.md`: its text, or a readable rendering of its typed answer."""
    text = completion.text if answer is None else render_answer(answer, summary_field=coordinator)
    return text if text.endswith("\n") else text + "\n"


def summary_source(text: str, answer: dict[str, Any] | None) -> str:
    """Where a coordinator's summary comes from: its answer's `summary` field when it has one, else
    the <summary> section of its text."""
    if answer is not None and isinstance(answer.get("summary"), str):
        return f"<summary>{answer['summary']}</summary>"
    return text
