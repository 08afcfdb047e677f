"""Prompt templates (Jinja2 package data in `orchestra_magic/prompts/`, which the repo's top-level `prompts/`
links to: worker, subcoordinator, coordinator) and reading a coordinator's summary back.

Templates render with StrictUndefined: a variable missing from the context is an error, never a silent
blank (the method's original templates once lost whole sections that way). Each template has two blocks:
`system`, the part shared by every agent of a role (so providers can cache it), and `user`, the task.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, PackageLoader, StrictUndefined, Template, TemplateError

from ..errors import SpecError
from .model import Templates

_SUMMARY = re.compile(r"<summary>(.*?)</summary>", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"</?\s*worker_result", re.IGNORECASE)


@cache
def _environment(folder: Path | None) -> Environment:
    """Templates from a spec's own folder, or (None) the shipped ones: package data, read through the
    import system, so they are found wherever the package is installed."""
    loader = FileSystemLoader(folder) if folder else PackageLoader("orchestra_magic", "prompts")
    return Environment(loader=loader, undefined=StrictUndefined, keep_trailing_newline=False, autoescape=False)


class Prompts:
    """The worker, sub-coordinator and coordinator templates of one run: the shipped ones unless the
    spec names its own."""

    def __init__(self, templates: Templates) -> None:
        self.worker = _load(templates.worker, "worker.md.j2", "templates.worker")
        self.subcoordinator = _load(templates.subcoordinator, "subcoordinator.md.j2", "templates.subcoordinator")
        self.coordinator = _load(templates.coordinator, "coordinator.md.j2", "templates.coordinator")

    def render_worker(self, context: Mapping[str, Any]) -> tuple[str, str]:
        return _render(self.worker, context)

    def render_subcoordinator(self, context: Mapping[str, Any]) -> tuple[str, str]:
        return _render(self.subcoordinator, context)

    def render_coordinator(self, context: Mapping[str, Any]) -> tuple[str, str]:
        return _render(self.coordinator, context)

    def check(self) -> None:
        """Render every template with a complete sample context, so a broken custom template is refused
        before the run starts rather than failing every agent."""
        base = {"run_name": "r", "context": "c", "domain": "d", "domain_context": "dc", "task": "t"}
        self.render_worker({**base, "worker_id": "w", "output_path": "workers/w.md"})
        result = {"agent": "w", "path": "workers/w.md", "text": "x", "missing": False, "error": "", "truncated": False}
        reader = {**base, "results": [result], "sources": "workers"}
        self.render_subcoordinator({**reader, "synthesis_path": "synthesis/d/1-0001.md", "level": 1})
        self.render_coordinator({**reader, "synthesis_path": "synthesis/d.md", "summary_words": 150})


def _load(user_path: str | None, shipped: str, key: str) -> Template:
    path = Path(user_path) if user_path else Path("orchestra_magic/prompts", shipped)
    try:
        template = _environment(path.resolve().parent if user_path else None).get_template(path.name)
    except TemplateError as exc:
        raise SpecError(f"cannot load template {path}: {exc.message or type(exc).__name__}", key) from None
    missing = {"system", "user"} - set(template.blocks)
    if missing:
        raise SpecError(f"template {path} must define the blocks {sorted(missing)}", key)
    return template


def _render(template: Template, context: Mapping[str, Any]) -> tuple[str, str]:
    """Render the `system` and `user` blocks; a missing variable raises instead of rendering blank."""
    ctx = template.new_context(dict(context))
    try:
        system = "".join(template.blocks["system"](ctx)).strip()
        user = "".join(template.blocks["user"](ctx)).strip()
    except TemplateError as exc:
        raise SpecError(f"template {template.name}: {exc.message or exc}", "templates") from None
    return system, user


def fence(text: str) -> str:
    """Keep a result's text from closing (or opening) the <worker_result> tag it is quoted in (a worker's,
    a sub-coordinator's or a domain summary: every reader fences its inputs the same way)."""
    return _FENCE.sub(lambda m: m.group(0)[: -len("worker_result")] + "worker-result", text)


def extract_summary(text: str, words: int, synthesis: str) -> tuple[str, bool]:
    """The coordinator's marked summary, cut (with a visible marker) if over ~4/3 of the asked length.

    Returns (summary, flagged). Flagged means the parent did not get the summary as written: it was
    too long, or the coordinator gave none and the synthesis' opening stands in for it.
    """
    limit = words + words // 3
    found = _SUMMARY.findall(text)
    summary = " ".join(found[-1].split()) if found else ""
    if not summary:
        opening = " ".join(_SUMMARY.sub("", text).split()[:limit])
        return f"{opening} … [no summary section; read {synthesis}]", True
    parts = summary.split(" ")
    if len(parts) <= limit:
        return summary, False
    return " ".join(parts[:limit]) + f" … [cut at {limit} words; full text in {synthesis}]", True


def worker_note(text: str) -> str:
    """A worker's closing line ("Done. Found three price tiers."), the only part the parent may keep."""
    for line in reversed(text.strip().splitlines()):
        if line.strip():
            note = line.strip()
            return note if len(note) <= 200 else note[:199] + "…"
    return ""
