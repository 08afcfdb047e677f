"""`python -m orchestra_magic` is the `orchestra` command."""

from .cli import entry

entry()
