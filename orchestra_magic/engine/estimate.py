"""The one token and dollar estimator: what a spec will read and write, before anything runs.

Its assumptions, stated once (the docs quote them):
- Text is `CHARS_PER_TOKEN` (4) characters a token, the API tokenizer's average on English prose. Code,
  tables and other languages run denser, so the tree keeps `WINDOW_RESERVE` of every window free.
- Every agent writes `max_tokens` (the ceiling) unless an average output is given (`output_tokens=`);
  a reader's prompt is its rendered template plus its inputs at that size, each with `PER_INPUT` tokens
  of quoting (tags, path).
- A coordinator's summary is at most 4/3 of `summary_words` (longer ones are cut), `TOKENS_PER_WORD`
  tokens a word.
- Dollars come from the price table (`pricing.py`), without prompt caching or batch discounts; a model
  with no price adds tokens but no dollars (the estimate says so).

Pure: no I/O, no event loop. The reduction tree (`planning`) sizes its groups from these figures, and
`om.plan()` / `--dry-run` prints them per level.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from ..pricing import cost_usd, window_of

CHARS_PER_TOKEN = 4
PER_INPUT = 40  # tokens of quoting around each input: its <worker_result> tags, path and list line
WINDOW_RESERVE = 0.05  # the share of every context window a plan leaves free for tokenizer variance
TOKENS_PER_WORD = 2  # for summaries: English averages ~1.3; the cut marker and names push it up


def tokens(text: str) -> int:
    """Estimated tokens of `text` (at least 1 for any text)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0


def usable_window(model: str) -> int:
    """The tokens a plan may fill in one context of `model`: its window less the reserve."""
    window = window_of(model)
    return window - math.ceil(window * WINDOW_RESERVE)


def summary_tokens(summary_words: int) -> int:
    """The most tokens a coordinator's summary takes (cut at 4/3 of the words asked for, plus a marker)."""
    return (summary_words + summary_words // 3) * TOKENS_PER_WORD + 30


@dataclass(slots=True)
class LevelEstimate:
    """One level of the tree: how many agents, the most inputs any of them reads, and what it costs."""

    level: int
    role: str
    agents: int = 0
    max_inputs: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0  # agents on a model with no known price (their dollars are not in `cost_usd`)
    max_prompt_tokens: int = 0  # the largest prompt of the level
    window: int = 0  # the smallest context window among the level's models

    def add(self, model: str, prompt_tokens: int, output_tokens: int, inputs: int) -> None:
        self.agents += 1
        self.max_inputs = max(self.max_inputs, inputs)
        self.input_tokens += prompt_tokens
        self.output_tokens += output_tokens
        self.max_prompt_tokens = max(self.max_prompt_tokens, prompt_tokens)
        self.window = min(self.window or window_of(model), window_of(model))
        cost = cost_usd(model, prompt_tokens, output_tokens)
        if cost is None:
            self.unpriced += 1
        else:
            self.cost_usd += cost


@dataclass(frozen=True, slots=True)
class Estimate:
    """A whole run's estimate, level by level (level 0: the workers)."""

    levels: tuple[LevelEstimate, ...]
    assumption: str  # how outputs were sized ("every agent writes max_tokens", or an average)

    @property
    def input_tokens(self) -> int:
        return sum(level.input_tokens for level in self.levels)

    @property
    def output_tokens(self) -> int:
        return sum(level.output_tokens for level in self.levels)

    @property
    def cost_usd(self) -> float:
        return sum(level.cost_usd for level in self.levels)

    @property
    def unpriced(self) -> int:
        return sum(level.unpriced for level in self.levels)


def levels_of(rows: Iterable[tuple[int, str, str, int, int, int]]) -> list[LevelEstimate]:
    """Fold (level, role, model, prompt tokens, output tokens, inputs) rows into one estimate per level."""
    by_level: dict[int, LevelEstimate] = {}
    for level, role, model, prompt, output, inputs in rows:
        entry = by_level.setdefault(level, LevelEstimate(level, role))
        if role not in entry.role.split("+"):
            entry.role += f"+{role}"
        entry.add(model, prompt, output, inputs)
    return [by_level[level] for level in sorted(by_level)]
