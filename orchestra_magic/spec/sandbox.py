"""The Jinja2 sandbox a spec's templates run in: bounded in work and in size, not only in what they reach.

jinja2's own sandbox stops a template from reaching Python's internals, but not from asking for a
billion characters (`{{ 'a' * 10**9 }}` took 17 s and 3.9 GB before failing) or for loops inside loops
that run for hours. This one refuses such work, before doing it wherever its size is known in advance:
- an operator (`*`, `**`, `+`, `%`) or a call (`'a'.ljust(n)`, `|center(n)`) that would make a string
  over `MAX_STRING_CHARS`, a list over `MAX_ITEMS` or a number over `MAX_INT_BITS`;
- loops and calls over `MAX_TEMPLATE_STEPS` in all of one spec's templates (a loop over a list or a
  range is charged its whole length when it starts, so nested loops are refused at once);
- a rendered value over `MAX_STRING_CHARS`, counted while it is rendered.
Templates cannot change lists or dicts either (`l.extend(l)` would grow one without an operator).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from functools import wraps
from typing import Any

from jinja2 import Template, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_STRING_CHARS = 1_000_000  # one string a template makes, or one rendered value
MAX_ITEMS = 100_000  # one list a template makes: as many as a run may have workers
MAX_INT_BITS = 4_096  # one number a template makes (10**1000 is about 3,300 bits)
MAX_TEMPLATE_STEPS = 1_000_000  # loop rounds and calls, over all the templates of one spec
_LOOP_FILTER = "_orchestra_loop"  # put around every loop's items (see `BoundedSandbox._parse`)
_SIZE_FILTER = "_orchestra_size"  # put around every `~` join
_MACRO_CALL_STEPS = 20  # a call of a macro costs about as much as 20 loop rounds
_WIDTH_METHODS = frozenset({"ljust", "rjust", "center", "zfill", "expandtabs"})  # of str: (width) -> str
_WIDTH_FILTERS = frozenset({"center", "indent", "wordwrap", "batch", "slice"})  # (value, width or count)
_WIDE_FORMAT = re.compile(r"[%:][^a-zA-Z%{}]*\d{7,}")  # a width or precision of a million or more


class TemplateLimit(SecurityError):
    """A template asked for more work or memory than a spec may take."""


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """A sandbox that counts the work of every template it renders; make one per spec load."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.steps = 0
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}
        self.filters[_LOOP_FILTER] = self._loop_items
        self.filters[_SIZE_FILTER] = checked
        self._compiled: dict[str, Template] = {}  # one for_each task template is rendered for every item

    def render_text(self, text: str, variables: Mapping[str, Any]) -> str:
        """Render `text`, refusing as soon as the output passes `MAX_STRING_CHARS`."""
        template = self._compiled.get(text) or self._compiled.setdefault(text, self.from_string(text))
        pieces, size = [], 0
        for piece in template.generate(variables):
            size += len(piece)
            if size > MAX_STRING_CHARS:
                raise TemplateLimit(f"the text it renders passes the limit of {MAX_STRING_CHARS:,} characters")
            pieces.append(piece)
        return "".join(pieces)

    def charge(self, steps: int) -> None:
        self.steps += steps
        if self.steps > MAX_TEMPLATE_STEPS:
            raise TemplateLimit(f"the spec's templates take over {MAX_TEMPLATE_STEPS:,} loop rounds and calls; "
                                "is a loop inside a loop by mistake?")

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _check_operator(operator, left, right)
        return checked(super().call_binop(context, operator, left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        # A macro calling itself twice doubles the work at each level, without a loop.
        __self.charge(_MACRO_CALL_STEPS if isinstance(__obj, Macro) else 1)
        _check_method_call(__obj, args, kwargs)
        return checked(super().call(__context, __obj, *args, **kwargs))

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """The parsed template with its loops counted and its `~` joins measured (jinja2 has no hook
        for either, and both run as plain Python in the compiled template)."""
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = _filtered(loop.iter, _LOOP_FILTER)
        for node in list(tree.find_all(nodes.Node)):  # listed first: the walk must not enter what it adds
            for field in node.fields:
                value = getattr(node, field)
                if isinstance(value, nodes.Concat):
                    setattr(node, field, _filtered(value, _SIZE_FILTER))
                elif isinstance(value, list):
                    value[:] = [_filtered(v, _SIZE_FILTER) if isinstance(v, nodes.Concat) else v for v in value]
        return tree

    def _loop_items(self, items: Iterable[Any]) -> Iterable[Any]:
        if isinstance(items, Sized):
            self.charge(len(items))
            return items
        return self._counted(items)

    def _counted(self, items: Iterable[Any]) -> Iterator[Any]:
        for item in items:
            self.charge(1)
            yield item


def checked(value: Any) -> Any:
    """`value`, or `TemplateLimit` when it is a string or a collection over the limits."""
    if isinstance(value, str | bytes) and len(value) > MAX_STRING_CHARS:
        raise TemplateLimit(f"it makes a text of {len(value):,} characters; the limit is {MAX_STRING_CHARS:,}")
    if isinstance(value, list | tuple | dict | set) and len(value) > MAX_ITEMS:
        raise TemplateLimit(f"it makes a list of {len(value):,} items; the limit is {MAX_ITEMS:,}")
    return value


def _check_operator(operator: str, left: Any, right: Any) -> None:
    if operator == "*":
        sequence, times = (left, right) if isinstance(right, int) else (right, left)
        if isinstance(sequence, str | bytes | list | tuple) and isinstance(times, int):
            _check_size(sequence, len(sequence) * max(times, 0), f"{operator} {times:,}")
    elif operator == "+" and isinstance(left, str | bytes | list | tuple) and isinstance(right, Sized):
        _check_size(left, len(left) + len(right), "+")
    elif operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0:
        if abs(left).bit_length() * right > MAX_INT_BITS:
            raise TemplateLimit(f"{left} ** {right} makes a number over {MAX_INT_BITS:,} bits")
    elif operator == "%":
        _check_format(left)


def _check_size(sequence: Any, size: int, what: str) -> None:
    limit, unit = (MAX_STRING_CHARS, "characters") if isinstance(sequence, str | bytes) else (MAX_ITEMS, "items")
    if size > limit:
        raise TemplateLimit(f"{type(sequence).__name__} {what} would make {size:,} {unit}; the limit is {limit:,}")


def _check_method_call(function: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """A str method given a width (`ljust`, `center`, `zfill`, `expandtabs`) or a wide format."""
    owner = getattr(inspect.unwrap(function), "__self__", None)
    name = getattr(function, "__name__", "")
    if isinstance(owner, str):
        if name in _WIDTH_METHODS:
            _check_counts(args, kwargs)
        elif name.startswith("format"):
            _check_format(owner)
        elif name == "replace" and len(args) >= 2:
            _check_replace(owner, args[0], args[1])


def _check_counts(args: Iterable[Any], kwargs: Mapping[str, Any]) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and value > MAX_STRING_CHARS:
            raise TemplateLimit(f"a width or count of {value:,}; the limit is {MAX_STRING_CHARS:,}")


def _check_format(text: Any) -> None:
    if isinstance(text, str) and _WIDE_FORMAT.search(text):
        raise TemplateLimit("a format with a width of a million characters or more")


def _check_replace(text: Any, old: Any, new: Any) -> None:
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str) and old:
        _check_size(text, len(text) + text.count(old) * (len(new) - len(old)), ".replace()")


def _bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """A built-in filter whose widths and counts are checked before it runs, and its result after."""
    skip = 2 if getattr(function, "jinja_pass_arg", None) else 1  # the environment or context, then the value

    @wraps(function)  # keeps `jinja_pass_arg`, so jinja2 still passes the context or environment
    def bounded(*args: Any, **kwargs: Any) -> Any:
        if name in _WIDTH_FILTERS:
            _check_counts(args[skip:], kwargs)
        if name == "format" and len(args) >= skip:
            _check_format(args[skip - 1])
        if name == "replace" and len(args) >= skip + 2:
            _check_replace(args[skip - 1], args[skip], args[skip + 1])
        return checked(function(*args, **kwargs))

    return bounded


def _filtered(node: nodes.Node, name: str) -> nodes.Filter:
    return nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)
