"""The summaries table a finished run prints in the terminal (`orchestra run`, `orchestra show`): a row per
domain with its short summary, then one line of counts, tokens, cost and where the full texts are.
Agent text is shown as written (rich `Text`), never read as markup."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .text import counts_text

if TYPE_CHECKING:
    from ..results import Run


def _truncated_workers(result: Run) -> dict[str, list[str]]:
    """Per domain, the agents whose output is cut off (done, but not whole)."""
    cut: dict[str, list[str]] = {}
    for agent in result.state.agents.values():
        if agent.truncated:
            cut.setdefault(agent.domain, []).append(agent.agent)
    return cut


def print_run(result: Run, console: Console) -> None:
    """The summaries table, then one line of counts and where the full texts are."""
    table = Table(show_lines=True, title=Text(f"Run {result.run_id}: {result.status}"))
    for column in ("domain", "status", "workers", "tokens in/out", "summary"):
        table.add_column(column, overflow="fold", ratio=4 if column == "summary" else None)
    cut = _truncated_workers(result)
    for row in result.summary_rows():
        missing: list[str] = row["missing"]
        workers = f"{row['workers'] - len(missing)}/{row['workers']}"
        workers += f" ({row['failed']} failed)" if row["failed"] else ""
        summary = str(row["summary"]) + (f"\nmissing: {', '.join(missing)}" if missing else "")
        if cut.get(row["domain"]):
            summary += f"\ntruncated (cut off at max_tokens): {', '.join(cut[row['domain']])}"
        tokens = f"{row['input_tokens']:,}/{row['output_tokens']:,}"
        cells = (str(row["domain"]), str(row["status"]), workers, tokens, summary)
        table.add_row(*(Text(cell) for cell in cells))  # Text: agent output is never read as rich markup
    console.print(table)
    if result.summary:  # the run-level coordinator's (a spec with a top-level `coordinator:`)
        console.print(Text(f"Run summary: {result.summary}"))
    state = result.state
    counts = counts_text(state.counts)
    counts += f" ({state.truncated} truncated: output cut off)" if state.truncated else ""
    reason = f" ({state.reason})" if state.reason else ""
    cost = f" Cost: {state.cost()}." if state.cost() else ""
    cached = state.usage.cache_read_tokens + state.usage.cache_write_tokens
    through_cache = f" (+{cached:,} through the prompt cache)" if cached else ""
    console.print(Text(f"{state.total} agents: {counts}{reason}. Tokens: {state.input_tokens:,} in{through_cache}, "
                       f"{state.output_tokens:,} out; {state.economy()}.{cost} Full texts: {result.path}"))

