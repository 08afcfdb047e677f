"""The built-in file tools (`read_file`, `write_file`, `list_files`), confined to the run folder.

What is enforced, for every path an agent gives:
- it must be relative: absolute paths, drive letters, `..` and hidden names (`.run.lock`, temporary
  files) are refused;
- after resolving symlinks it must still be inside the run folder (reads) or inside the agent's own
  workspace, `workspace/workers/<id>/` or `workspace/coordinators/<domain>/` (writes), and that
  workspace must itself resolve inside the run folder;
- so a write can never touch the run's bookkeeping (run.json, journal.jsonl, spec.yaml), the outputs
  (workers/, synthesis/) or another agent's workspace. Writes are atomic, like every file we write.

What is not: your own Python tools are your code, running in this process with your permissions; they
get `orchestra_magic.workspace()` as the place to write, but nothing stops them writing elsewhere.
A refusal is returned to the model as an error result, so it can correct itself.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from ..runfolder.folder import write_atomic
from .context import current_context

MAX_READ_CHARS = 100_000
MAX_WRITE_CHARS = 2_000_000
MAX_LISTED = 500


class Refused(ValueError):
    """A path the file tools will not touch; its message goes back to the model."""


def read_file(path: str) -> str:
    """Read a text file of this run.

    Args:
        path: Relative to the run folder, e.g. workers/<id>.md, synthesis/<domain>.md, or the path
            write_file returned for a file written earlier.
    """
    context = current_context()
    target = _inside(context.run_folder, path)
    if not target.is_file():
        raise Refused(f"{path} is not a file of this run (see list_files)")
    text = target.read_text(encoding="utf-8", errors="replace")
    if len(text) > MAX_READ_CHARS:
        return text[:MAX_READ_CHARS] + f"\n[... cut: {len(text) - MAX_READ_CHARS:,} more characters]"
    return text


def write_file(path: str, text: str) -> str:
    """Write a text file in your own workspace folder, replacing it if it exists.

    Args:
        path: Relative to your workspace folder, e.g. notes.md or data/prices.csv.
        text: The whole content of the file.
    """
    context = current_context()
    _check_workspace(context.run_folder, context.workspace)
    target = _inside(context.workspace, path)
    if len(text) > MAX_WRITE_CHARS:
        raise Refused(f"the text is {len(text):,} characters; the limit is {MAX_WRITE_CHARS:,}")
    if target.is_dir():
        raise Refused(f"{path} is a folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    _inside(context.workspace, path)  # again, now the folders exist: none may be a link out
    write_atomic(target, text)
    return f"wrote {target.relative_to(context.run_folder.resolve()).as_posix()} ({len(text):,} characters)"


def list_files(path: str = ".") -> str:
    """List the files under a folder of this run, one path (relative to the run folder) per line.

    Args:
        path: A folder relative to the run folder, e.g. workers or workspace; . for the whole run.
    """
    context = current_context()
    root = context.run_folder.resolve()
    folder = root if path in ("", ".") else _inside(root, path)
    if not folder.is_dir():
        raise Refused(f"{path} is not a folder of this run")
    found = sorted(p.relative_to(root).as_posix() for p in folder.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))
    shown = found[:MAX_LISTED]
    more = f"\n[... {len(found) - MAX_LISTED} more]" if len(found) > MAX_LISTED else ""
    return "\n".join(shown) + more if shown else "(no files)"


def _inside(base: Path, relative: str) -> Path:
    """`base / relative`, resolved, or `Refused` when it is not a plain relative path that stays
    inside `base` (symlinks followed)."""
    if not relative or not relative.strip():
        raise Refused("the path is empty")
    windows, posix = PureWindowsPath(relative), PurePosixPath(relative)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or relative.startswith(("/", "\\", "~")):
        raise Refused(f"{relative} is absolute; give a path relative to the run folder")
    parts = [p for p in _parts(relative) if p not in ("", ".")]
    if ".." in parts:
        raise Refused(f"{relative} goes up with '..'; paths must stay inside the run folder")
    if any(p.startswith(".") for p in parts):
        raise Refused(f"{relative} names a hidden file; those belong to the run's own bookkeeping")
    root = base.resolve()
    target = Path(os.path.realpath(root.joinpath(*parts)))
    if target != root and root not in target.parents:
        raise Refused(f"{relative} leads outside the allowed folder (through a link)")
    return target


def _parts(path: str) -> list[str]:
    """Both separators count, so `a\\..\\b` cannot slip past the `..` check on any system."""
    return path.replace("\\", "/").split("/")


def _check_workspace(run_folder: Path, workspace: Path) -> None:
    """The workspace must be exactly where it belongs: a link anywhere on its path (even one to
    another folder of the run, like workers/) would let writes land on files that are not the agent's."""
    expected = run_folder.resolve() / workspace.relative_to(run_folder)
    if Path(os.path.realpath(workspace)) != expected:
        raise Refused("your workspace folder is a link to somewhere else; writing there is refused")
