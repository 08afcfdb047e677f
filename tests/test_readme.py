"""The README's Python examples run as written.

Every ```python block runs, in README order and in one namespace (as the cells of a notebook would),
in a fresh folder holding `examples/` and the README, with top-level `await` allowed. `provider="anthropic"`
reaches the project's fake Messages API over HTTP through `ANTHROPIC_BASE_URL`, with a made-up key. Only
blocks that name a remote machine (a bucket, a Dask scheduler) are left out: nothing of theirs is here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from helpers import fake_api

REPO = Path(__file__).resolve().parent.parent
REMOTE = ("s3://", "gs://", "tcp://")
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
RUNNER = """
import ast, asyncio, sys
source = open(sys.argv[1], encoding="utf-8").read()
code = compile(source, "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
result = eval(code, {"__name__": "__main__"})
if asyncio.iscoroutine(result):
    asyncio.run(result)
"""


def readme_blocks() -> tuple[list[str], list[str]]:
    """The Python blocks to run, and the first line of each block left out."""
    blocks = BLOCK.findall((REPO / "README.md").read_text(encoding="utf-8"))
    local = [block for block in blocks if not any(remote in block for remote in REMOTE)]
    return local, [block.splitlines()[0] for block in blocks if block not in local]


def test_the_readmes_python_examples_run_as_written(tmp_path: Path) -> None:
    blocks, left_out = readme_blocks()
    assert len(blocks) >= 3 and len(left_out) <= 2, (blocks, left_out)
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    shutil.copy(REPO / "README.md", tmp_path / "README.md")
    (tmp_path / "readme.py").write_text("\n".join(blocks), encoding="utf-8")
    with fake_api() as env:
        done = subprocess.run([sys.executable, "-c", RUNNER, "readme.py"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = sorted((tmp_path / "orchestration").iterdir())
    assert len(runs) >= 3  # the quickstart, its arun twin and the python-provider fan-out (resume reuses one)
    assert all((run / "run.json").is_file() for run in runs)
