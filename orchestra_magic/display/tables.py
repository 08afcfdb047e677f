"""The summaries as a `%%orchestrate` cell shows them: each summary whole and wrapped.

Why: pandas cuts a cell's text at 50 characters in a notebook, and a terminal drops whole columns to
fit its width, so the one thing the parent is meant to read, the summary, was the first to go.
`SummaryFrame` is still a DataFrame (the cell's value, per the contract) with its own displays;
anything computed from it is a plain DataFrame again, and `run.summaries` stays plain.
"""

from __future__ import annotations

import shutil
import textwrap
from typing import Any

import pandas as pd

# In the text display: the summary gets lines of its own, and these, too wide or too many, are left out.
_TEXT_HIDDEN = ("summary", "missing", "summary_cut", "synthesis_path")
_WRAPPED = {"white-space": "pre-wrap", "text-align": "left", "min-width": "28em", "max-width": "60em",
            "vertical-align": "top"}


class SummaryFrame(pd.DataFrame):
    """A summaries DataFrame that shows its `summary` column whole and wrapped."""

    @property
    def _constructor(self) -> Any:
        return pd.DataFrame  # a selection or a computation is a plain frame, with pandas' own display

    def _repr_html_(self) -> str:
        frame = pd.DataFrame(self)
        styler = frame.style.hide(axis="index").format(precision=4, na_rep="")
        if "summary" in frame.columns:
            styler = styler.set_properties(subset=["summary"], **_WRAPPED)
        styler = styler.set_table_styles([{"selector": "td", "props": [("vertical-align", "top")]}])
        return str(styler.set_table_attributes('class="dataframe"').to_html())  # styled as notebooks style frames

    def __repr__(self) -> str:
        frame = pd.DataFrame(self)
        width = max(60, shutil.get_terminal_size((100, 24)).columns)
        table = frame.drop(columns=[c for c in _TEXT_HIDDEN if c in frame.columns]).to_string(index=False)
        if "summary" not in frame.columns:
            return table
        blocks = [textwrap.fill(f"{row['domain']}: {row['summary']}", width=width, subsequent_indent="    ")
                  for row in frame.to_dict("records")]
        return table + "\n\n" + "\n\n".join(blocks)
