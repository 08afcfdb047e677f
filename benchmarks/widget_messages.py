"""Widget messages a run sends to the browser, for 30 and 1,000 agents, in a real kernel.

The widget tree is redrawn on a timer (`%config OrchestraMagics.refresh`, 0.1 s), so messages should
follow elapsed time, not the number of agents. Counts the `comm_msg` messages on iopub during the cell.

    python benchmarks/widget_messages.py
"""

from __future__ import annotations

import tempfile
import time

from jupyter_client.manager import start_new_kernel

SETUP = """%load_ext orchestra_magic
import asyncio, orchestra_magic as om
async def work(request):
    await asyncio.sleep(0.05)
    return "A finding.\\nDone."
busy = om.PythonProvider(work)
"""


def spec(agents: int) -> str:
    per_domain = (agents - 5) // 5
    return "concurrency: 50\ndomains:\n" + "".join(
        f"  - name: d{d}\n    coordinator: c\n    workers:\n"
        f"      - for_each: \"{{{{ range({per_domain}) | list }}}}\"\n        task: \"t{{{{ item }}}}\"\n"
        for d in range(5)
    )


def count(kc: object, agents: int) -> tuple[int, float]:
    msg_id = kc.execute(f"%%orchestrate --provider busy\n{spec(agents)}")  # type: ignore[attr-defined]
    messages, started = 0, time.perf_counter()
    while True:
        msg = kc.get_iopub_msg(timeout=300)  # type: ignore[attr-defined]
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        messages += msg["msg_type"] == "comm_msg"
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return messages, time.perf_counter() - started


def main() -> None:
    with tempfile.TemporaryDirectory() as cwd:
        km, kc = start_new_kernel(kernel_name="python3", cwd=cwd)
        try:
            kc.execute_interactive(SETUP, timeout=60)
            for agents in (30, 1000):
                messages, seconds = count(kc, agents)
                print(f"{agents:>5} agents: {messages:4d} widget messages in {seconds:5.1f} s "
                      f"= {messages / seconds:5.1f}/s, {messages / agents:5.2f} per agent")
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)


if __name__ == "__main__":
    main()
