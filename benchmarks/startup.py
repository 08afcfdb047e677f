"""A CLI run's own start-up: from `python -m orchestra_magic run spec.yaml` starting to its first request
reaching the API, against `python -c "import anthropic"` (which any script using the SDK pays).

A listener on 127.0.0.1 stands in for the API: it notes when the first `POST` arrives, then the run is
stopped (its answer does not matter). The issue's bar: start-up ≤ the SDK's import + 0.3 s. The three
commands alternate for `--rounds` rounds; medians are shown.

    python benchmarks/startup.py --rounds 5
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SPEC = "name: startup\ndomains:\n  - name: d0\n    coordinator: Synthesise.\n    workers:\n      - task: Task 1.\n"


def first_post(server: socket.socket, arrived: threading.Event, at: list[float]) -> None:
    """Accept connections until one sends a request (the CLI first opens one only to see the port listens)."""
    while not arrived.is_set():
        try:
            connection, _ = server.accept()
        except OSError:
            return
        with connection:
            connection.settimeout(30)
            try:
                data = connection.recv(16)
            except OSError:
                continue
            if data.startswith(b"POST"):
                at.append(time.perf_counter())
                arrived.set()


def to_first_request(folder: Path) -> float:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    arrived, at = threading.Event(), []
    thread = threading.Thread(target=first_post, args=(server, arrived, at), daemon=True)
    thread.start()
    env = {**os.environ, "ANTHROPIC_API_KEY": "x",
           "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{server.getsockname()[1]}"}
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "orchestra_magic", "run", "spec.yaml", "--provider", "anthropic",
                              "--root", "runs"], cwd=folder, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        if not arrived.wait(60):
            raise RuntimeError("no request reached the listener within 60 s")
    finally:
        child.kill()
        child.wait()
        server.close()
    return at[0] - start


def whole(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    figures: dict[str, list[float]] = {"python -c pass": [], "python -c 'import anthropic'": [],
                                       "orchestra run, to its first request": []}
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "spec.yaml").write_text(SPEC, encoding="utf-8")
        for _ in range(args.rounds):
            figures["python -c pass"].append(whole([sys.executable, "-c", "pass"]))
            figures["python -c 'import anthropic'"].append(whole([sys.executable, "-c", "import anthropic"]))
            figures["orchestra run, to its first request"].append(to_first_request(Path(folder)))
    medians = {name: statistics.median(values) for name, values in figures.items()}
    for name, value in medians.items():
        print(f"{name:<40} {value:6.3f} s  (median of {args.rounds})")
    extra = medians["orchestra run, to its first request"] - medians["python -c 'import anthropic'"]
    print(f"start-up beyond the SDK's import: {extra:+.3f} s (bar: +0.300 s); "
          f"load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
