"""Run folders under a URL root: any fsspec filesystem (``s3://``, ``gs://``, ``az://``, ``memory://``).

A plain path or a ``file://`` URL is a local folder and never comes here: it keeps the os-level
guarantees of `runfolder` (write-then-rename, an O(1) appended journal, an OS file lock). Under a URL:

- **Every file is one put** (`pipe_file`) of its whole text. An object store shows an object only once
  its upload is complete, so a reader sees it whole or not at all, as with a local rename. (On
  filesystems that are not object stores, such as SFTP, a put is a plain write: mount them instead.)
- **The journal** cannot be appended to, so its lines are kept in memory and the whole journal since the
  last snapshot is put as one object: before any file is put (an output is on record before it exists,
  as locally), and once per turn of the event loop after an agent finishes without a file (failed,
  skipped), so a burst of finishes costs one put. A crash loses only lines not yet put: starts and
  retries (a resume reruns those agents anyway) and the finishes of that one loop turn.
- **The lock** is a ``.run.lock`` object put with fsspec's exclusive write (``mode="create"``), naming
  host and process. It is exclusive only where the backend implements that (fsspec's fallback checks,
  then puts), and a crashed run leaves it behind: a run on the same host takes over a lock whose process
  is gone; otherwise the error names the object to delete.

Agents' outputs (and the journal before them) are put from worker threads, so a slow store does not
hold up the other agents, and a coordinator reads the outputs this run put from memory. Snapshots, the
lock, and reads of outputs put by an earlier run (after a resume) are done on the event loop. fsspec is
imported here only, and only for URL roots.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, RunFolderError
from .layout import JOURNAL, LOCK, MANIFEST, URL_PREFIX

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

# The packages behind the common protocols, to name when fsspec itself is missing.
_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs",
             "abfss": "adlfs", "adl": "adlfs"}


def filesystem(url: str) -> tuple[AbstractFileSystem, str]:
    """The fsspec filesystem for `url` and the path inside it. Missing packages and unknown protocols
    are a `ConfigError` that says what to install."""
    match = URL_PREFIX.match(url)
    if match is None or not url[match.end():].strip("/"):  # `memory://` alone: a root needs a place
        raise ConfigError(f"{url!r} names no place for run folders: add a path after the protocol, "
                          "e.g. memory://runs or s3://my-bucket/runs")
    innermost = URL_PREFIX.match(url.rsplit("::", 1)[-1])  # simplecache::s3://…: s3 is what needs a package
    protocol = (innermost or match).group(1).lower()
    try:
        from fsspec.core import url_to_fs
    except ImportError:
        package = _PACKAGES.get(protocol, "fsspec")
        need = "fsspec" if package == "fsspec" else f"fsspec and {package}"
        raise ConfigError(f"run folders at {url} need {need} (not installed): pip install {package}") from None
    try:
        fs, path = url_to_fs(url)
    except ImportError as exc:  # fsspec knows the protocol; the package behind it is missing
        from fsspec.registry import known_implementations

        known: str = known_implementations.get(protocol, {}).get("class", "")
        package = known.split(".")[0] or _PACKAGES.get(protocol, "")
        if not package:
            raise ConfigError(f"run folders at {url} need a package that is not installed: {exc}") from None
        raise ConfigError(f"run folders at {url} need the {package} package, which is not installed: "
                          f"pip install {package}") from None
    except ValueError as exc:  # "Protocol not known"
        raise ConfigError(f"cannot use {url} for run folders: {exc}. Use a local folder or a URL "
                          "fsspec knows (s3://, gs://, az://, memory://, ...)") from None
    except Exception as exc:  # some filesystems connect when made (ftp, sftp): refused, unreachable, credentials
        raise ConfigError(f"cannot use {url} for run folders: {_describe(exc)}") from None
    return fs, path.rstrip("/")


def run_folders(root: str) -> list[str]:
    """The URLs of the run folders (those with a run.json) directly under the URL `root`."""
    fs, base = filesystem(root)
    found = fs.glob(f"{base}/*/{MANIFEST}")
    return [f"{root.rstrip('/')}/{name.removeprefix(base + '/').rsplit('/', 1)[0]}" for name in sorted(found)]


class RemoteStore:
    """The files of one run folder at a URL: whole-object puts, a journal put whole, a lock object.

    Outputs are written from worker threads (see `RunFolder.write_output`) while the event loop goes on
    appending journal lines. One journal put is in flight at a time; a writer that arrives meanwhile
    waits for it and then puts every line still missing in one go (group commit), so agents finishing
    together share a put. A snapshot starts a new `_epoch`: it covers every line before it."""

    WRITERS = 32  # threads putting outputs at once: object stores take many parallel puts

    def __init__(self, url: str, *, fresh: bool = False) -> None:
        self.fs, self.base = filesystem(url)
        self.location = url.rstrip("/")
        self._lines: list[str] = []  # the journal since the last snapshot
        self._stored: int | None = 0 if fresh else None  # how many of them the store holds; None: not read yet
        self._turn = threading.Condition()  # guards the counters below and hands the journal put over
        self._putting = False  # a journal put is in flight
        self._epoch = 0  # snapshots so far
        self._flush_soon: asyncio.Handle | None = None
        self._locked = False
        self._writer: ThreadPoolExecutor | None = None
        self._unread: dict[str, str] = {}  # workers' outputs put by this run that no coordinator has read yet
        self._listed: set[str] = set()  # folders (`workers`, `synthesis`) `exists` has listed…
        self._files: set[str] = set()  # …and the files in them, with those this run put since

    @property
    def writer(self) -> ThreadPoolExecutor:
        """The threads `RunFolder.write_output` puts outputs from (made on first use)."""
        if self._writer is None:
            self._writer = ThreadPoolExecutor(self.WRITERS, thread_name_prefix="orchestra-put")
        return self._writer

    @classmethod
    def create(cls, root: str, run_id: str) -> RemoteStore:
        """A new, empty run folder. There are no folders to make on an object store; the random tail of
        the run id keeps two runs apart, and an existing name is refused anyway."""
        filesystem(root)  # a missing package is named with the root the user gave
        store = cls(f"{root.rstrip('/')}/{run_id}", fresh=True)
        try:
            taken = store.fs.exists(store.base)
        except Exception as exc:  # the first contact: credentials, a missing bucket, no network
            raise RunFolderError(f"cannot create a run folder under {root}: {_describe(exc)}") from None
        if taken:
            raise FileExistsError(store.location)
        return store

    def _key(self, relative: str) -> str:
        return f"{self.base}/{relative}"

    def _put(self, relative: str, text: str) -> None:
        key = self._key(relative)
        try:
            self.fs.pipe_file(key, text.encode())
        except FileNotFoundError:  # a filesystem with real folders (SFTP, SMB): make the missing ones, retry
            self.fs.makedirs(self.fs._parent(key), exist_ok=True)
            self.fs.pipe_file(key, text.encode())

    def write(self, relative: str, text: str) -> None:
        self.flush()
        self._put(relative, text)
        if relative.startswith("workers/"):
            self._unread[relative] = text
        self._files.add(relative)

    def read_text(self, relative: str) -> str:
        """A worker's output put by this run is read from memory, once (its coordinator reads it on the
        event loop, and it is what the store holds); anything else is one get."""
        unread = self._unread.pop(relative, None)
        if unread is not None:
            return unread
        data: bytes = self.fs.cat_file(self._key(relative))
        return data.decode("utf-8")

    def exists(self, relative: str) -> bool:
        """A file in a subfolder is looked up in one listing of it, made on first use: a resume asks
        about every output, and a listing takes one request per 1,000 names, asking one per name."""
        folder = relative.rpartition("/")[0]
        if not folder:
            return bool(self.fs.isfile(self._key(relative)))
        if folder not in self._listed:
            prefix = self.base + "/"
            self._files.update(path.removeprefix(prefix) for path in self.fs.find(self._key(folder)))
            self._listed.add(folder)
        return relative in self._files

    # ---- the journal ---------------------------------------------------------------------------

    def append_journal(self, line: str, durable: bool) -> None:
        """Keep `line`; a `durable` one (an agent finished with no file to follow) is put at the end of
        this turn of the event loop, together with whatever else finished in it."""
        if self._stored is None:  # resuming: keep what the crashed run left, but not a torn last line
            with self._turn:
                self._lines = [kept for kept in self.read_journal().splitlines(keepends=True) if kept.endswith("\n")]
                self._stored = len(self._lines)
        self._lines.append(line)
        if durable and self._flush_soon is None:
            try:
                self._flush_soon = asyncio.get_running_loop().call_soon(self._flush_later)
            except RuntimeError:  # no event loop (a script using RunFolder directly): put it now
                self.flush()

    def flush(self) -> None:
        """Return once every line appended so far is on the store (or folded into a snapshot). Safe
        from any thread; the put runs outside the lock so that lines keep being appended meanwhile."""
        with self._turn:
            epoch, wanted = self._epoch, len(self._lines)
            while self._epoch == epoch and self._stored is not None and self._stored < wanted:
                if self._putting:
                    self._turn.wait()
                    continue
                self._putting, count = True, len(self._lines)
                text = "".join(self._lines[:count])
                self._turn.release()
                try:
                    self._put(JOURNAL, text)
                finally:
                    self._turn.acquire()
                    self._putting = False
                    self._turn.notify_all()
                self._stored = count

    def _flush_later(self) -> None:
        self._flush_soon = None
        with suppress(OSError):  # the lines are kept: the next put of a file, a snapshot or close retries (and raises)
            self.flush()

    def read_journal(self) -> str:
        try:
            return self.read_text(JOURNAL)
        except FileNotFoundError:
            return ""

    def save_snapshot(self, manifest: Iterable[str]) -> None:
        """Put run.json, then empty the journal (replaying old lines over a newer snapshot is harmless)."""
        text = "".join(manifest)  # one put: an object store has no partial writes to stream into
        with self._turn:
            while self._putting:  # an older journal must not land after the emptied one
                self._turn.wait()
            self._put(MANIFEST, text)
            if self._stored != 0:
                self._put(JOURNAL, "")
            self._lines, self._stored = [], 0
            self._epoch += 1
            self._turn.notify_all()

    def close(self) -> None:
        if self._flush_soon is not None:
            self._flush_soon.cancel()
            self._flush_soon = None
        if self._writer is not None:
            self._writer.shutdown()  # every output is written before the run ends; nothing waits here
            self._writer = None
        self.flush()

    # ---- the lock ------------------------------------------------------------------------------

    def lock(self, run_id: str) -> None:
        owner = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "at": time.time()})
        try:
            try:
                self.fs.pipe_file(self._key(LOCK), owner.encode(), mode="create")
            except FileExistsError:
                holder = self._holder()
                if not _gone(holder):
                    lock = f"{self.location}/{LOCK}"
                    raise RunFolderError(
                        f"run {run_id} is in use by another run: {_who(holder)} holds {lock}. Wait for it to "
                        f"finish or stop it, then resume; if that run is gone (crashed), delete {lock} and resume"
                    ) from None
                self._put(LOCK, owner)  # its process is gone: take the run folder over
        except RunFolderError:
            raise
        except Exception as exc:  # the first write: permissions, credentials, a missing bucket
            raise RunFolderError(f"cannot write to the run folder {self.location}: {_describe(exc)}") from None
        self._locked = True

    def unlock(self) -> None:
        if self._locked:
            self._locked = False
            with suppress(FileNotFoundError):
                self.fs.rm_file(self._key(LOCK))

    def held(self) -> bool:
        return self._locked or (self.exists(LOCK) and not _gone(self._holder()))

    def _holder(self) -> dict[str, Any]:
        try:
            holder = json.loads(self.read_text(LOCK))
        except (OSError, ValueError):
            return {}
        return holder if isinstance(holder, dict) else {}


def _who(holder: dict[str, Any]) -> str:
    if not holder:
        return "a run"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder.get("at", 0))))
    return f"process {holder.get('pid')} on {holder.get('host')}, since {since}"


def _gone(holder: dict[str, Any]) -> bool:
    """True when the lock's holder ran on this host and its process no longer exists."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists, owned by someone else
        return False
    return False


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
