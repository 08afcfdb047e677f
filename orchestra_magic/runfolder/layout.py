"""The run folder's names, defined once: what each file is called and where a root's URL begins.

Both stores (the local one in `folder`, the remote one in `remote`) read them from here.
"""

from __future__ import annotations

import re

DEFAULT_ROOT = "orchestration"
MANIFEST = "run.json"
JOURNAL = "journal.jsonl"
SPEC = "spec.yaml"
OPTIONS = "options.json"  # how the run was run (see `runfolder.options`)
LOCK = ".run.lock"
RUN_DOMAIN = "_run"  # the run-level coordinator's domain: `synthesis/_run.md`; no spec domain may use it
URL_PREFIX = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)(://|::)")  # s3://…, memory://…, simplecache::s3://…
LOCAL_PROTOCOLS = ("file", "local")


def answer_path(output_path: str) -> str:
    """Where a typed answer's JSON lies: beside its readable `.md` (`workers/<id>.json`)."""
    return output_path.removesuffix(".md") + ".json"
