"""The fake Messages API's prose: deterministic, plausible sentences, marked as simulated.

The same request (system, prompt, model) always gets the same text, so runs on the fake are
reproducible; a prompt that asks for a `<summary>` gets one, others end with a `Done. ...` line.
"""

from __future__ import annotations

import hashlib
import random

from .tools import SIMULATED_MARK

_SUBJECTS = ("The available evidence", "Recent field data", "A review of the sources", "Comparative analysis",
             "The strongest study", "Independent replication", "The survey evidence", "Field monitoring")
_VERBS = ("suggests", "indicates", "points to", "is consistent with", "supports", "hints at")
_OBJECTS = ("a modest but steady effect", "a clear seasonal pattern", "a ceiling on gains at larger scales",
            "a trade-off between cost and reliability", "strong regional variation",
            "a lag of several months between cause and effect", "an underestimated role for maintenance",
            "broad agreement on the main drivers")
_QUALIFIERS = ("although sample sizes remain small", "once obvious confounders are controlled for",
               "across most of the settings examined", "with notable exceptions in older data",
               "but the uncertainty bands are still wide", "in line with earlier estimates")
_TEMPLATES = ("{S} {V} {O}, {Q}.", "Taken together, the sources point to {O}, {Q}.",
              "One open question is whether the case for {O} holds more widely, {Q}.",
              "{S} {V} {O}; this shapes the next steps.")


def tokens(text: str) -> int:
    """About 4 characters a token, as the API's tokenizer averages on English prose."""
    return max(1, round(len(text) / 4))


def sentence(rng: random.Random) -> str:
    template = rng.choice(_TEMPLATES)
    return template.format(S=rng.choice(_SUBJECTS), V=rng.choice(_VERBS), O=rng.choice(_OBJECTS),
                           Q=rng.choice(_QUALIFIERS))


def _sentences(rng: random.Random, min_words: int, first: str = "", min_chars: int = 0) -> str:
    out = [first] if first else []
    words, chars = len(first.split()), len(first)
    while words < min_words or chars < min_chars:
        out.append(sentence(rng))
        words, chars = words + len(out[-1].split()), chars + len(out[-1]) + 1
    return " ".join(out)


def simulated_text(system: str, prompt: str, model: str, length: int | None = None) -> str:
    """Deterministic prose for a request: same system, prompt and model, same text. `length`: make the
    answer about that many tokens long (the fake's `output_tokens`, for tests that must meet the window)."""
    digest = hashlib.sha256("\x00".join((system, prompt, model)).encode()).hexdigest()
    rng = random.Random(int(digest, 16))
    summary = "<summary>" in prompt
    room = 0 if length is None else length * 4 - (_SUMMARY_CHARS if summary else _DONE_CHARS)
    text = f"{SIMULATED_MARK} {_sentences(rng, 80, min_chars=room)}"
    if summary:
        n = prompt.count("</worker_result>")
        opening = f"{SIMULATED_MARK} This synthesis draws on {n} worker result{'' if n == 1 else 's'}."
        return f"{text}\n\n<summary>\n{_sentences(rng, 40, opening)}\n</summary>"
    points = rng.randint(3, 6)
    return f"{text}\n\nDone. Found {points} recurring patterns in the evidence, each with its main caveat."


_SUMMARY_CHARS = 420  # about what the <summary> part of a long answer takes
_DONE_CHARS = 90  # and the closing "Done." line
