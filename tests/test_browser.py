"""The widget tree in a real browser: JupyterLab on 127.0.0.1 driven by Playwright in Debian's chromium.

Runs the quickstart notebook and watches the tree fill, then clicks Stop during a slow run while the
cell is still executing. Screenshots go to test-artifacts/. Skipped where chromium or playwright is
missing, unless ORCHESTRA_REQUIRE_BROWSER=1 (CI sets it), in which case that is a failure.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SLOW_SPEC = "concurrency: 2\ndomains:\n" + "".join(
    f"  - name: d{d}\n    coordinator: Sum up.\n    workers:\n"
    + "".join(f"      - task: Task {i} of d{d}.\n" for i in range(20))
    for d in range(2)
)


def _missing() -> str:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is not installed (apt-get install chromium)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright)"
    if shutil.which("jupyter-lab", path=str(Path(sys.executable).parent)) is None:
        return "jupyterlab is not installed"
    return ""


if _missing():
    if os.environ.get("ORCHESTRA_REQUIRE_BROWSER") == "1":
        raise RuntimeError(f"browser tests are required here, but {_missing()}")
    pytest.skip(_missing(), allow_module_level=True)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """JupyterLab serving a copy of examples/, so runs land in a temp folder."""
    import nbformat  # here, not at the top: its import costs seconds that every xdist worker would pay

    root = tmp_path_factory.mktemp("lab")
    for name in ("quickstart.ipynb", "quickstart.yaml"):
        shutil.copy(REPO / "examples" / name, root / name)
    slow = nbformat.v4.new_notebook()
    slow.cells = [nbformat.v4.new_code_cell("%load_ext orchestra_magic\nfrom orchestra_magic "
                                            "import OfflineProvider\nslow = OfflineProvider(latency_ms=400)"),
                  nbformat.v4.new_code_cell(f"%%orchestrate --provider slow -o run\n{SLOW_SPEC}")]
    slow.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(slow, root / "slow.ipynb")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token = secrets.token_hex(16)
    settings = root / ".lab-settings"  # render every cell (no windowing), no news pop-up
    for name, value in (("notebook-extension/tracker", '{"windowingMode": "none"}'),
                        ("apputils-extension/notification", '{"fetchNews": "false"}')):
        target = settings / f"@jupyterlab/{name}.jupyterlab-settings"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(value)
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "jupyter-lab"), "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"],
        cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(settings)},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(f"{base}/api/status?token={token}")
        yield f"{base}/lab/workspaces/{{0}}/tree/{{0}}.ipynb?reset&token={token}", root  # a fresh workspace each
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)


def _wait_until_up(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.25)
    raise AssertionError(f"JupyterLab did not answer within {timeout:g} s")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One chromium for the module (it takes seconds to start); each test gets a page of its own."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page in a context of its own (no cookies or storage shared with another test)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        page.set_default_timeout(60_000)
        yield page
    finally:
        context.close()


def run_all(page: Any, url: str) -> None:
    page.goto(url)
    page.locator(".jp-Notebook").wait_for()
    page.get_by_text("Python 3 (ipykernel) | Idle").wait_for()  # the kernel is ready
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()


def tree_header(page: Any) -> Any:
    """The tree's header line: run id, status badge, counts (only the header mentions the context economy)."""
    return page.locator(".widget-html", has_text="Context economy").first


def scroll_to(locator: Any) -> None:
    """Bring a widget into view for a screenshot. The tree's header is drawn anew as the run goes on (and
    when it ends), so the element found can be detached by the time it is scrolled to: then scroll to
    the one that replaced it."""
    from playwright.sync_api import Error

    for attempt in range(3):
        try:
            locator.scroll_into_view_if_needed(timeout=10_000)
            return
        except Error as exc:
            if "not attached" not in str(exc) or attempt == 2:
                raise


def tree_bar(page: Any) -> Any:
    """The run's own progress bar, beside the Stop button (each domain row has its own bar)."""
    return page.locator(".widget-hbox", has=page.locator("button", has_text="Stop")).locator(".progress-bar").first


def test_the_quickstart_fills_the_tree_and_returns_summaries(lab: tuple[str, Path], page: Any) -> None:
    from playwright.sync_api import expect

    url, root = lab
    run_all(page, url.format("quickstart"))
    page.screenshot(path=ARTIFACTS / "quickstart-start.png")
    header = tree_header(page)
    header.wait_for()
    scroll_to(header)
    page.screenshot(path=ARTIFACTS / "quickstart-running.png")  # the offline run is fast: often already done
    expect(header).to_have_text(re.compile(r"^vector-db-review-\S+ done\s+workers 16/16 \(16 done\), "
                                           r"coordinators 3/3 \(3 done\)"), timeout=60_000)
    expect(tree_bar(page)).to_have_attribute("style", re.compile(r"width: 100%"))
    expect(tree_bar(page)).to_have_class(re.compile(r"progress-bar-success"))
    page.locator("table.dataframe", has_text="performance").first.wait_for()  # the summaries, one row a domain
    page.locator("button.widget-toggle-button", has_text="workers").first.click()  # open a domain
    page.locator("table", has_text="perf-pinecone").first.wait_for()
    scroll_to(header)
    page.screenshot(path=ARTIFACTS / "quickstart-done.png")
    page.locator("button.widget-button", has_text="Plot").first.click()  # the run in pictures, under the header
    page.locator("img.widget-image").first.wait_for()
    page.locator(".jp-RenderedImage img").first.wait_for()  # the notebook's own run.plot() cell
    page.screenshot(path=ARTIFACTS / "quickstart-plot.png")
    assert len(list((root / "orchestration").glob("*/synthesis/*.md"))) == 3


def test_stop_works_while_the_cell_is_executing(lab: tuple[str, Path], page: Any) -> None:
    from playwright.sync_api import expect

    url, root = lab
    run_all(page, url.format("slow"))
    header = tree_header(page)
    expect(header).to_have_text(re.compile(r"^run-\S+ running\s+workers [1-9]\d*/40 "), timeout=60_000)  # one done
    prompt = page.locator(".jp-CodeCell", has=header).locator(".jp-InputPrompt")
    assert prompt.inner_text().strip() == "[*]:"  # the %%orchestrate cell is still executing
    scroll_to(header)
    page.screenshot(path=ARTIFACTS / "stop-before.png")
    page.locator("button.widget-button", has_text="Stop").click()
    expect(header).to_have_text(re.compile(r"^run-\S+ cancelled\s.*cancelled.*stopped: stopped by the user",
                                           re.DOTALL), timeout=30_000)  # counted apart, and it says why
    expect(prompt).to_have_text(re.compile(r"\[\d+\]:"), timeout=30_000)  # the cell finished...
    page.locator("pre", has_text="Stopped:").wait_for(timeout=10_000)  # ...saying how to resume
    page.locator("table.dataframe", has_text="cancelled").first.wait_for()  # its table, a live output
    scroll_to(header)
    page.screenshot(path=ARTIFACTS / "stop-after.png")
    done = re.search(r"workers (\d+)/40", header.inner_text())
    (folder,) = (root / "orchestration").glob("run-*")  # the slow spec has no name
    finished = len(list(folder.glob("workers/*.md")))
    assert done and 0 < int(done[1]) < 40
    assert 0 < finished < 40
