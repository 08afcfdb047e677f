"""Writing a file so that it appears whole or not at all: the one way the run folder writes its files.

A hidden temporary file beside the target, written through a plain descriptor, then renamed over it
(atomic on POSIX). Optionally durable: the file and its folder's entry fsynced, for the files a resume
cannot do without after a power cut (run.json, spec.yaml).
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Iterable, Iterator
from contextlib import suppress
from pathlib import Path

TEMPORARY = re.compile(r"\..+\.[0-9a-f]{8}\.tmp")  # what `write_atomic` writes before its rename


def write_atomic(path: Path, text: str | Iterable[str], *, durable: bool = False) -> None:
    """Write `text` (or its pieces, in order) to `path` so that the file appears whole or not at all.
    `durable`: also on the disk before this returns, the file and its folder's entry (fsync both), so a
    power cut cannot undo it; a plain rename survives a killed process but not a lost page cache.
    Plain descriptors, not `open()`: a run writes a file per agent, and a text-mode file object costs
    five more system calls per file (a tty check, seeks, a stat) for nothing written here."""
    folder, name = os.path.split(path)
    fd, tmp = _temporary(folder, name)
    try:
        try:
            for block in (text,) if isinstance(text, str) else _blocks(text):
                _write_all(fd, block.encode("utf-8"))
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        sync_folder(path.parent)


def _temporary(folder: str, name: str) -> tuple[int, str]:
    """A new hidden file beside `name`, open for writing (never one that exists: `O_EXCL`)."""
    while True:
        tmp = os.path.join(folder, f".{name}.{random.getrandbits(32):08x}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666), tmp
        except FileExistsError:
            continue


def _blocks(pieces: Iterable[str], size: int = 1 << 16) -> Iterator[str]:
    """Small pieces (run.json's, one agent each) joined into blocks of about `size` characters: one
    system call per block, not per piece, while never holding the whole text at once."""
    block: list[str] = []
    length = 0
    for piece in pieces:
        block.append(piece)
        length += len(piece)
        if length >= size:
            yield "".join(block)
            block, length = [], 0
    yield "".join(block)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def sync_folder(folder: Path) -> None:
    """Put a folder's entries (a rename into it) on the disk."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
