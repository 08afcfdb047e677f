"""The magic in real kernels: executed example notebooks, a background run awaited later, a kernel
interrupt mid-run, and the Stop button clicked (as the browser would) while the cell is executing."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from helpers import first_output

if TYPE_CHECKING:
    from jupyter_client.blocking.client import BlockingKernelClient
    from jupyter_client.manager import KernelManager
    from nbformat import NotebookNode

# nbformat, nbclient and jupyter_client are imported in the tests that use them: nbformat's import builds
# jsonschema's IRI grammar (seconds), which every xdist worker would otherwise pay while collecting.

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SLOW = "from orchestra_magic import OfflineProvider\nslow = OfflineProvider(latency_ms={ms})"
SLOW_SPEC = "concurrency: 2\ndomains:\n" + "".join(
    f"  - name: d{d}\n    coordinator: Sum up.\n    workers:\n"
    + "".join(f"      - task: Task {i} of d{d}.\n" for i in range(10))
    for d in range(2)
)


def read(path: Path) -> NotebookNode:
    import nbformat

    return nbformat.read(path, as_version=4)


def new_notebook(*sources: str) -> NotebookNode:
    import nbformat

    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in sources])


def execute(nb: NotebookNode, cwd: Path) -> NotebookNode:
    from nbclient import NotebookClient

    NotebookClient(nb, timeout=120, kernel_name="python3", store_widget_state=True,
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def progress_bars(nb: NotebookNode) -> list[tuple[int, int]]:
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    return [(m["state"]["value"], m["state"]["max"]) for m in state.values() if m["model_name"] == "IntProgressModel"]


def outputs(nb: NotebookNode, index: int) -> str:
    cell = nb.cells[index]
    return "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in cell.outputs)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    for name in ("quickstart.ipynb", "explore_run.ipynb", "quickstart.yaml"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    return tmp_path


def test_the_quickstart_notebook_runs_top_to_bottom_offline(workdir: Path) -> None:
    nb = execute(read(workdir / "quickstart.ipynb"), workdir)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert errors == []
    summaries = next(i for i, c in enumerate(nb.cells) if c.source.startswith("%%orchestrate"))
    assert "performance" in outputs(nb, summaries) and "compliance" in outputs(nb, summaries)
    # What a text-only reader of the notebook (nbconvert --to markdown, an LLM) sees of the tree: its
    # final status line, put in place of the first one (a display updated when the run ended), once
    assert "[done] workers 16/16 (16 done), coordinators 3/3 (3 done)" in outputs(nb, summaries)
    assert outputs(nb, summaries).count("vector-db-review-") == 1
    bars = progress_bars(nb)
    assert (19, 19) in bars  # the run's overall bar ended full: 16 workers + 3 coordinators
    assert all(value == maximum for value, maximum in bars)
    plotted = next(i for i, c in enumerate(nb.cells) if c.source == "run.plot()")
    assert any("image/png" in o.get("data", {}) for o in nb.cells[plotted].outputs)

    explored = execute(read(workdir / "explore_run.ipynb"), workdir)
    assert not [o for c in explored.cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert "vector-db-review" in outputs(explored, 2)


def test_the_rows_to_columns_notebook_fans_out_a_real_table_and_plots_the_typed_answers(tmp_path: Path) -> None:
    shutil.copy(EXAMPLES / "rows_to_columns.ipynb", tmp_path)
    nb = execute(read(tmp_path / "rows_to_columns.ipynb"), tmp_path)
    assert [o for c in nb.cells for o in c.get("outputs", []) if o["output_type"] == "error"] == []
    joined = next(i for i, c in enumerate(nb.cells) if c.source.startswith("answers = "))
    assert "'confidence': dtype('float64')" in outputs(nb, joined)
    assert "342 penguins, 342 answered" in outputs(nb, joined)
    assert any("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    synthesis = nb.cells[-1].outputs[0]["data"]
    assert "text/markdown" in synthesis and "<summary>" not in synthesis["text/markdown"]


def test_a_background_run_awaited_in_a_later_cell_saves_its_final_widget_state(tmp_path: Path) -> None:
    nb = new_notebook("%load_ext orchestra_magic\n" + SLOW.format(ms=30),
                      f"%%orchestrate --provider slow --background -o run\n{SLOW_SPEC}",
                      "finished = await run\nprint(finished.status, run.state.finished)")
    execute(nb, tmp_path)
    # the cell showed the handle at once, and that output was updated in place when the run ended
    # (26 agents: 20 workers, 2 sub-coordinators a domain at fan_in 8, 2 coordinators)
    assert "<RunHandle of <Run " in outputs(nb, 1) and " done: 26 done" in outputs(nb, 1)
    assert "done 26" in outputs(nb, 2)
    assert (26, 26) in progress_bars(nb)


@pytest.fixture(scope="module")
def one_kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KernelManager, BlockingKernelClient]]:
    """One kernel for the tests below (a kernel takes seconds of CPU to start); each test moves it to its
    own folder and defines the providers it uses before it runs anything."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path_factory.mktemp("kernel")))
    try:
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.fixture
def kernel(one_kernel: tuple[KernelManager, BlockingKernelClient],
           tmp_path: Path) -> tuple[KernelManager, BlockingKernelClient]:
    """The module's kernel, working in this test's `tmp_path`."""
    run_cell(one_kernel[1], f"%cd {tmp_path}")
    return one_kernel


def run_cell(kc: BlockingKernelClient, code: str, seen: list[dict[str, Any]] | None = None) -> str:
    """Execute and return what the cell printed; every output message goes to `seen` too."""
    printed: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        if seen is not None:
            seen.append(msg)
        if msg["msg_type"] == "stream":
            printed.append(msg["content"]["text"])

    reply = kc.execute_interactive(code, timeout=120, output_hook=hook)
    assert reply["content"]["status"] == "ok", reply["content"]
    return "".join(printed)


def collect(kc: BlockingKernelClient, msg_id: str, until: Any, timeout: float = 60) -> list[dict[str, Any]]:
    """iopub messages of one execution until `until(msg)` holds or the cell goes idle."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = kc.get_iopub_msg(timeout=deadline - time.monotonic())
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        seen.append(msg)
        if until(msg) or (msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle"):
            return seen
    raise AssertionError(f"no matching message within {timeout} s")



def text_of(messages: list[dict[str, Any]]) -> str:
    """What the messages show as text: printed lines and the plain-text form of displays."""
    return "".join(m["content"].get("text", "") + m["content"].get("data", {}).get("text/plain", "")
                   for m in messages if m["msg_type"] in ("stream", "display_data", "update_display_data"))


def test_a_kernel_interrupt_stops_the_run_and_the_folder_resumes(kernel: Any, tmp_path: Path) -> None:
    km, kc = kernel
    run_cell(kc, "%load_ext orchestra_magic\n" + SLOW.format(ms=200))
    msg_id = kc.execute(f"%%orchestrate --provider slow\n{SLOW_SPEC}")
    folder = first_output(tmp_path / "orchestration")
    km.interrupt_kernel()
    messages = collect(kc, msg_id, until=lambda m: False)
    assert "Stopped:" in text_of(messages) and f"--resume {folder.name}" in text_of(messages)
    assert not [m for m in messages if m["msg_type"] == "error"]  # one short message, no traceback
    assert not list(folder.rglob("*.tmp"))

    resumed = kc.execute(f"%%orchestrate --provider slow --resume {folder.name} -o again\n{SLOW_SPEC}\n")
    collect(kc, resumed, until=lambda m: False, timeout=120)
    statuses = run_cell(kc, "print(again.status, sorted(set(again.agents.status)))")
    assert statuses.startswith("done") and "skipped" in statuses  # finished agents were not asked again


def test_the_stop_button_works_while_the_cell_is_executing(kernel: Any, tmp_path: Path) -> None:
    _, kc = kernel
    run_cell(kc, "%load_ext orchestra_magic\n" + SLOW.format(ms=200))
    msg_id = kc.execute(f"%%orchestrate --provider slow -o run\n{SLOW_SPEC}")
    opened = collect(kc, msg_id, until=lambda m: m["msg_type"] == "comm_open"
                     and m["content"]["data"]["state"].get("description") == "Stop")
    stop = opened[-1]["content"]["comm_id"]
    first_output(tmp_path / "orchestration")
    click = {"comm_id": stop, "data": {"method": "custom", "content": {"event": "click"}}}
    kc.shell_channel.send(kc.session.msg("comm_msg", click))  # what the browser sends on a click
    rest = collect(kc, msg_id, until=lambda m: False)
    assert "Stopped:" in text_of(rest)
    summary = run_cell(kc, "print(run.status, run.state.counts['done'], run.state.total)")
    assert "cancelled" in summary


FLAKY = """import orchestra_magic as om
seen = set()
def flaky(request):
    if request.agent.endswith("-3") and request.agent not in seen:
        seen.add(request.agent)
        raise RuntimeError("first try fails")
    return "A finding.\\nDone."
flaky_provider = om.PythonProvider(flaky)
"""


def test_retry_failed_reruns_only_the_failed_agents_in_the_same_folder(kernel: Any, tmp_path: Path) -> None:
    _, kc = kernel
    run_cell(kc, "%load_ext orchestra_magic\n" + FLAKY)
    msg_id = kc.execute(f"%%orchestrate --provider flaky_provider -o run\nattempts: 1\n{SLOW_SPEC}")
    opened = collect(kc, msg_id, until=lambda m: False)
    retry = next(m["content"]["comm_id"] for m in opened if m["msg_type"] == "comm_open"
                 and m["content"]["data"]["state"].get("description") == "Retry failed")
    first = run_cell(kc, "print(run.run_id, run.status, run.state.counts['failed'])").split()
    assert first[1:] == ["failed", "2"]
    click = {"comm_id": retry, "data": {"method": "custom", "content": {"event": "click"}}}
    table = next(m["content"]["transient"]["display_id"] for m in opened if m["msg_type"] == "display_data"
                 and "d0-3" in m["content"]["data"].get("text/html", ""))  # the table: d0-3 is missing
    kc.shell_channel.send(kc.session.msg("comm_msg", click))
    updates: list[dict[str, Any]] = []
    again = run_cell(kc, "finished = await run\nprint(finished.run_id, finished.status, "
                         "sorted(finished.agents.set_index('agent').status.items()))", updates)
    run_id, status = again.split()[:2]
    assert (run_id, status) == (first[0], "done")  # the same folder, now complete
    assert "('d0-3', 'done')" in again and "('d0-1', 'skipped')" in again
    assert "('coordinator:d0', 'done')" in again  # its input changed, so it ran again
    (shown,) = [m["content"]["data"]["text/html"] for m in updates if m["msg_type"] == "update_display_data"
                and m["content"]["transient"]["display_id"] == table]  # the cell's table, updated in place
    assert shown.count(">done</td>") == 2 and "d0-3" not in shown  # nothing missing any more
