"""How long a hostile spec takes to be refused, and the memory it takes: each case once, in this process.

The cases of issue 11 (before the bounded sandbox: 17.6 s and 3.9 GB for the billion characters, a 2 GB
spec.yaml for the aliases, over 60 s for the two others) and a few more of the same kind. The refusals are
checked by tests/reliability/test_hostile_specs.py; this prints their CPU time and the peak memory.

    python benchmarks/hostile_specs.py
"""

from __future__ import annotations

import resource
import time
from typing import Any

from orchestra_magic.errors import SpecError
from orchestra_magic.spec.load import load_spec


def one_worker(**worker: Any) -> dict[str, Any]:
    return {"domains": [{"name": "a", "coordinator": "c", "workers": [worker]}]}


CASES: dict[str, Any] = {
    "name: {{ 'a' * 10**9 }}": {"name": "{{ 'a' * 10**9 }}", **one_worker(task="t")},
    "a 100 KB scalar aliased 20,000 times": "big: &big " + "x" * 100_000 + "\ndomains:\n  - name: d\n"
    "    coordinator: c\n    workers:\n" + "      - task: *big\n" * 20_000,
    "for_each: {{ [0] * 10**6 }}": one_worker(for_each="{{ [0] * 10**6 }}", task="t"),
    "nested range(100000) loops": one_worker(
        task="{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"),
    "a macro that calls itself twice": one_worker(
        task="{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}"),
    "20 domains x range(100000)": {"domains": [
        {"name": f"d{n}", "coordinator": "c", "workers": [{"for_each": "{{ range(100000) }}", "task": "t"}]}
        for n in range(20)]},
}


def main() -> None:
    for name, source in CASES.items():
        start = time.process_time()
        try:
            load_spec(source)
            outcome = "ACCEPTED"
        except SpecError as exc:
            outcome = str(exc)[:90]
        print(f"{time.process_time() - start:6.2f} s CPU  {name:38}  {outcome}")
    print(f"peak memory of the process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB")


if __name__ == "__main__":
    main()
