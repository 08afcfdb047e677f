"""An answer that did not finish is not `done`: broken answers on the wire are retried, then failed with a
message a user can read, and an answer cut at `max_tokens` stays done but is flagged everywhere.

Everything runs the real `anthropic` SDK over HTTP against the fake Messages API, which produces each
fault on demand (`fault_rates`, drawn from its seeded RNG)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import make_spec, run_against
from rich.console import Console

from orchestra_magic.display.summary import print_run
from orchestra_magic.display.text import status_line
from orchestra_magic.display.widget import RunView
from orchestra_magic.engine.retry import RetryPolicy
from orchestra_magic.fake.server import FakeMessagesAPI
from orchestra_magic.providers.anthropic.provider import AnthropicProvider
from orchestra_magic.results import load_run
from orchestra_magic.state.events import AgentFinished, Event
from orchestra_magic.state.run import RunState

# max_wait also bounds the run-wide pause after an overload (1 s when the server names none).
FAST = RetryPolicy(attempts=2, base=0.001, cap=0.01, rate_limit_retries=1, max_wait=0.01)


def streamed(url: str) -> AnthropicProvider:
    """A client timeout under a 4,096-token answer's worst case: the provider streams (see nonstreamed)."""
    return AnthropicProvider(base_url=url, timeout=60.0)


def plain(url: str) -> AnthropicProvider:
    return AnthropicProvider(base_url=url)


# Each fault, how the call went, and words of the error the user is left with once the retries are
# spent. The stream faults concern streams; a plain request can get an empty or a cut body.
BROKEN_ANSWERS = [
    ("no_stop", streamed, "ended before the message was complete (no message_stop event)"),
    ("invalid_json", streamed, "was not valid JSON"),
    ("json_not_sse", streamed, "without a message: no message_start event in its body (content type application/json)"),
    ("empty", streamed, "without a message: no message_start event"),
    ("no_message_start", streamed, "without a message: no message_start event"),
    ("sse_error", streamed, "the API sent overloaded_error in the middle of its answer"),
    ("invalid_json", plain, "was not valid JSON"),
    ("empty", plain, "was not valid JSON"),
]


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")


@pytest.mark.parametrize(("fault", "provider", "words"), BROKEN_ANSWERS,
                         ids=[f"{fault}-{provider.__name__}" for fault, provider, _ in BROKEN_ANSWERS])
def test_a_broken_answer_is_retried_then_failed_with_words_never_recorded_done(
        tmp_path: Path, fault: str, provider: Callable[[str], AnthropicProvider], words: str) -> None:
    fake = FakeMessagesAPI(fault_rates={fault: 1.0})
    run = run_against(fake, tmp_path, make_spec({"d": 1}), provider=provider, retry=FAST)
    assert {bool(body.get("stream")) for body in fake.requests} == {provider is streamed}
    worker = run.state.agents["d-1"]
    assert worker.status == "failed"
    assert worker.error.startswith("gave up after 2 attempts; last error: ") and words in worker.error
    assert "AssertionError" not in worker.error
    assert fake.faults[fault] == 2  # retried once, by the engine (the SDK's own retries are off)
    assert not (run.path / "workers" / "d-1.md").exists()  # nothing half-written stands as its answer


def test_an_error_event_mid_stream_is_waited_out_as_an_overload_like_a_529(tmp_path: Path) -> None:
    fake = FakeMessagesAPI(fault_rates={"sse_error": 1.0})
    run = run_against(fake, tmp_path, make_spec({"d": 1}), provider=streamed, retry=FAST)
    assert run.state.rate_limited == 1  # the wait after the first was a rate-limit wait, as after a 529
    assert run.state.agents["d-1"].attempts == 2  # one try, then one more for the overload (rate_limit_retries=1)


@pytest.mark.parametrize("provider", [streamed, plain])
def test_with_broken_answers_among_good_ones_every_output_is_the_whole_answer(
        tmp_path: Path, provider: Callable[[str], AnthropicProvider]) -> None:
    kinds = {kind for kind, way, _ in BROKEN_ANSWERS if way is provider}
    clean = run_against(FakeMessagesAPI(), tmp_path / "clean", make_spec({"a": 6, "b": 6}))
    fake = FakeMessagesAPI(fault_rates=dict.fromkeys(kinds, 0.06 * 6 / len(kinds)), seed=3)
    faulty = run_against(fake, tmp_path / "faulty", make_spec({"a": 6, "b": 6}), provider=provider,
                         retry=RetryPolicy(attempts=10, base=0.001, cap=0.01, rate_limit_retries=10, max_wait=0.01))
    assert faulty.status == "done" and sum(fake.faults.values()) >= 3
    for agent in clean.state.agents.values():
        assert (faulty.path / agent.path).read_bytes() == (clean.path / agent.path).read_bytes()


def test_an_answer_cut_at_max_tokens_stays_done_but_is_flagged_in_every_view_and_to_its_coordinator(
        tmp_path: Path) -> None:
    fake = FakeMessagesAPI()
    spec = make_spec({"d": 2}, roles={"worker": {"max_tokens": 12}})
    finished: list[Event] = []
    run = run_against(fake, tmp_path, spec, listeners=(lambda event, _: finished.append(event),))
    assert run.status == "done"
    agents = run.agents.set_index("agent")
    assert agents.truncated.to_dict() == {"d-1": True, "d-2": True, "coordinator:d": False}
    assert all(e.truncated for e in finished if isinstance(e, AgentFinished) and e.agent != "coordinator:d")
    rows = {row["agent"]: row for row in json.loads((run.path / "run.json").read_text())["agents"]}
    assert rows["d-1"]["truncated"] is True and rows["coordinator:d"]["truncated"] is False
    assert load_run(run.path).state.truncated == 2
    coordinator_prompt = json.dumps(fake.requests[-1])
    assert 'truncated=\\"true\\"' in coordinator_prompt
    assert "[Note: the result of d-1 above is truncated" in coordinator_prompt
    assert "[Note: the result of d-2 above is truncated" in coordinator_prompt
    _views_mark_it(run.state, run)


def _views_mark_it(state: RunState, run: object) -> None:
    assert "(✂ 2 truncated)" in status_line(state, 0.0)
    console = Console(record=True, width=200)
    print_run(run, console)  # type: ignore[arg-type]
    printed = console.export_text()
    assert "truncated (cut off at max_tokens): d-1, d-2" in printed and "(2 truncated: output cut off)" in printed
    view = RunView(run, on_stop=lambda: None, on_retry=lambda: None)  # type: ignore[arg-type]
    domain = view.domains[0]
    assert "✂ 2 truncated" in domain.label.value
    domain.toggle.value = True  # opens the worker table
    assert domain.table.value.count("✂ truncated") == 2
