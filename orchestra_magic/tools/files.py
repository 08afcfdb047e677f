"""The built-in file tools (`read_file`, `write_file`, `list_files`), confined to the run folder.

What is enforced, for every path an agent gives:
- it must be relative: absolute paths, drive letters, `..` and hidden names (`.run.lock`, temporary
  files) are refused;
- it is opened one component at a time, each relative to the folder opened before it (`openat`) and
  never through a link, starting at the run folder (reads) or at the agent's own workspace,
  `workspace/workers/<id>/` or `workspace/coordinators/<domain>/` (writes), itself opened that way
  from the run folder. The check and the use are one step: a folder swapped for a link while a call
  runs makes the call fail, never reach outside (a check of the path, then an open, let 443 of 24,155
  writes land outside the folder under such a race);
- so a write can never touch the run's bookkeeping (run.json, journal.jsonl, spec.yaml), the outputs
  (workers/, synthesis/) or another agent's workspace. Writes are atomic, like every file we write;
- each workspace holds at most `MAX_WORKSPACE_BYTES` in at most `MAX_WORKSPACE_FILES` files.

What is not: your own Python tools are your code, running in this process with your permissions; they
get `orchestra_magic.workspace()` as the place to write, but nothing stops them writing elsewhere.
A refusal is returned to the model as an error result, so it can correct itself. The tools need a
system whose `os.open` takes `dir_fd` (Linux, macOS and the BSDs); elsewhere they refuse every call.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Iterator, Sequence
from contextlib import suppress
from pathlib import Path, PurePosixPath, PureWindowsPath

from .context import current_context

MAX_READ_CHARS = 100_000
MAX_WRITE_CHARS = 2_000_000
MAX_LISTED = 500
MAX_WORKSPACE_BYTES = 20_000_000  # all the files of one agent's workspace
MAX_WORKSPACE_FILES = 1_000
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_FOLDER = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | _CLOEXEC
_SUPPORTED = os.open in os.supports_dir_fd and bool(_NOFOLLOW)


class Refused(ValueError):
    """A path the file tools will not touch; its message goes back to the model."""


def read_file(path: str) -> str:
    """Read a text file of this run.

    Args:
        path: Relative to the run folder, e.g. workers/<id>.md, synthesis/<domain>.md, or the path
            write_file returned for a file written earlier.
    """
    parts = _parts_of(path)
    with _Folder.open(current_context().run_folder, (), path) as root, root.descend(parts[:-1], path) as folder:
        data, size = folder.read(parts[-1], path, limit=4 * MAX_READ_CHARS)
    text = data.decode("utf-8", errors="replace")
    if len(text) > MAX_READ_CHARS or size > len(data):
        shown = text[:MAX_READ_CHARS]
        return shown + f"\n[... cut: {size - len(shown.encode('utf-8', errors='replace')):,} more bytes]"
    return text


def write_file(path: str, text: str) -> str:
    """Write a text file in your own workspace folder, replacing it if it exists.

    Args:
        path: Relative to your workspace folder, e.g. notes.md or data/prices.csv.
        text: The whole content of the file.
    """
    context = current_context()
    parts = _parts_of(path)
    if len(text) > MAX_WRITE_CHARS:
        raise Refused(f"the text is {len(text):,} characters; the limit is {MAX_WRITE_CHARS:,}")
    data = text.encode("utf-8")
    workspace = context.workspace.relative_to(context.run_folder).parts
    with _Folder.open(context.run_folder, workspace, path, create=True) as own, \
            own.descend(parts[:-1], path, create=True) as folder:
        _check_quota(own, folder, parts[-1], len(data))
        folder.write(parts[-1], data, path)
    return f"wrote {PurePosixPath(*workspace, *parts)} ({len(text):,} characters)"


def list_files(path: str = ".") -> str:
    """List the files under a folder of this run, one path (relative to the run folder) per line.

    Args:
        path: A folder relative to the run folder, e.g. workers or workspace; . for the whole run.
    """
    parts = [] if path in ("", ".") else _parts_of(path)
    with _Folder.open(current_context().run_folder, (), path) as root, root.descend(parts, path) as folder:
        found = sorted(str(PurePosixPath(*parts, name)) for name, _ in folder.files())
    shown = found[:MAX_LISTED]
    more = f"\n[... {len(found) - MAX_LISTED} more]" if len(found) > MAX_LISTED else ""
    return "\n".join(shown) + more if shown else "(no files)"


class _Folder:
    """An open folder (a descriptor): everything below it is reached through it, never through a link."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    @classmethod
    def open(cls, run_folder: Path, parts: Sequence[str], path: str, create: bool = False) -> _Folder:
        """`run_folder` (the engine's own, links allowed), then `parts` below it (no links: a workspace
        that is a link, even to another folder of the run, would let writes land on other files)."""
        if not _SUPPORTED:
            raise Refused("the built-in file tools need a system with openat and O_NOFOLLOW (Linux, macOS)")
        root = cls(os.open(run_folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC))
        if not parts:
            return root
        with root:
            try:
                return root.descend(parts, path, create)
            except Refused as refusal:
                if "through a link" in str(refusal):
                    raise Refused("your workspace folder is a link to somewhere else; writing there is refused") \
                        from None
                raise

    def __enter__(self) -> _Folder:
        return self

    def __exit__(self, *_: object) -> None:
        os.close(self.fd)

    def descend(self, parts: Sequence[str], path: str, create: bool = False) -> _Folder:
        """The folder `parts` below this one, each component opened from the one before."""
        fd = os.dup(self.fd)
        try:
            for part in parts:
                if create:
                    with suppress(FileExistsError):
                        os.mkdir(part, dir_fd=fd)
                try:
                    child = os.open(part, _FOLDER, dir_fd=fd)
                except OSError as exc:  # a link is ENOTDIR here (O_DIRECTORY | O_NOFOLLOW): ask which
                    raise _refusal(exc, path, link=_is_link(fd, part)) from None
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return _Folder(fd)

    def read(self, name: str, path: str, limit: int) -> tuple[bytes, int]:
        """Up to `limit` bytes of a regular file here, and its size. O_NONBLOCK: a FIFO must not hang us."""
        try:
            fd = os.open(name, os.O_RDONLY | _NOFOLLOW | _CLOEXEC | os.O_NONBLOCK, dir_fd=self.fd)
        except OSError as exc:
            raise _refusal(exc, path) from None
        with os.fdopen(fd, "rb") as file:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise Refused(f"{path} is not a file of this run (see list_files)")
            return file.read(limit), info.st_size

    def write(self, name: str, data: bytes, path: str) -> None:
        """Atomic: a temporary file in this folder, renamed over `name`. The rename would replace a link
        there, not follow it, and fails on a folder; a link is refused first only to tell the model."""
        if _is_link(self.fd, name):
            raise Refused(f"{path} leads outside the allowed folder (through a link)")
        temporary = f".{name[:200]}.{secrets.token_hex(4)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
        try:
            fd = os.open(temporary, flags, 0o644, dir_fd=self.fd)
        except OSError as exc:
            raise _refusal(exc, path) from None
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
            os.replace(temporary, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except OSError as exc:
            with suppress(OSError):
                os.unlink(temporary, dir_fd=self.fd)
            raise _refusal(exc, path) from None
        except BaseException:
            with suppress(OSError):
                os.unlink(temporary, dir_fd=self.fd)
            raise

    def size_of(self, name: str) -> int | None:
        """The size of the regular file `name` here, or None when there is none."""
        try:
            info = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except OSError:
            return None
        return info.st_size if stat.S_ISREG(info.st_mode) else None

    def files(self, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, int]]:
        """Every regular file below, as (path relative to here, size); links and hidden names skipped."""
        with os.scandir(self.fd) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    with suppress(Refused), self.descend([entry.name], entry.name) as child:
                        yield from child.files((*prefix, entry.name))
                elif entry.is_file(follow_symlinks=False):
                    try:
                        size = entry.stat(follow_symlinks=False).st_size
                    except OSError:  # gone since the folder was read: a file another call replaced
                        continue
                    yield str(PurePosixPath(*prefix, entry.name)), size


def _check_quota(workspace: _Folder, folder: _Folder, name: str, size: int) -> None:
    """Counted on disk at each write, so it holds across resumes; the file replaced is not counted twice."""
    files, used = 0, 0
    for _, file_size in workspace.files():
        files, used = files + 1, used + file_size
    replaced = folder.size_of(name)
    files, used = files + (replaced is None), used - (replaced or 0) + size
    if used > MAX_WORKSPACE_BYTES:
        raise Refused(f"your workspace would hold {used:,} bytes; the limit is {MAX_WORKSPACE_BYTES:,}")
    if files > MAX_WORKSPACE_FILES:
        raise Refused(f"your workspace would hold {files:,} files; the limit is {MAX_WORKSPACE_FILES:,}")


def _refusal(exc: OSError, path: str, link: bool = False) -> Refused:
    """The OS's refusal as one the model can act on."""
    if link or exc.errno in (errno.ELOOP, errno.EMLINK):  # EMLINK: FreeBSD's O_NOFOLLOW on a link
        return Refused(f"{path} leads outside the allowed folder (through a link)")
    if exc.errno == errno.ENOENT:
        return Refused(f"{path} is not a file of this run (see list_files)")
    if exc.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):
        return Refused(f"{path} is a folder")
    if exc.errno == errno.ENOTDIR:
        return Refused(f"{path} is not a folder of this run")
    return Refused(f"{path}: {exc.strerror or exc}")


def _is_link(folder: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _parts_of(relative: str) -> list[str]:
    """The components of a plain relative path, or `Refused` when it is not one."""
    if not relative or not relative.strip():
        raise Refused("the path is empty")
    windows, posix = PureWindowsPath(relative), PurePosixPath(relative)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or relative.startswith(("/", "\\", "~")):
        raise Refused(f"{relative} is absolute; give a path relative to the run folder")
    parts = [p for p in relative.replace("\\", "/").split("/") if p not in ("", ".")]  # both separators count
    if ".." in parts:
        raise Refused(f"{relative} goes up with '..'; paths must stay inside the run folder")
    if any(p.startswith(".") for p in parts):
        raise Refused(f"{relative} names a hidden file; those belong to the run's own bookkeeping")
    if not parts or "\x00" in relative:
        raise Refused(f"{relative!r} names no file")
    return parts
