"""The `anthropic` provider through the real SDK over real HTTP, against the project's fake Messages API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import make_spec, run_against

import orchestra_magic as om
from orchestra_magic.engine.retry import RetryPolicy
from orchestra_magic.errors import ConfigError
from orchestra_magic.fake.server import SIMULATED_MARK, FakeMessagesAPI

KEY = "sk-ant-test-MARKER-never-on-disk"


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    yield KEY


def test_a_run_goes_through_the_sdk_and_records_usage(tmp_path: Path, api_key: str) -> None:
    fake = FakeMessagesAPI()
    result = run_against(fake, tmp_path, make_spec({"a": 3}, model="claude-haiku-5-5"))
    assert result.status == "done"
    assert len(fake.requests) == 4
    # plain requests: 4,096 tokens is an answer the SDK lets come unstreamed (see test_nonstreamed)
    assert all("stream" not in body and body["model"] == "claude-haiku-5-5" for body in fake.requests)
    assert result.output("a-1").startswith(SIMULATED_MARK)
    assert (result.agents.input_tokens > 0).all() and (result.agents.output_tokens > 0).all()
    assert result.summaries.summary[0] and not result.summaries.summary_cut[0]
    coordinator_prompt = fake.requests[-1]["messages"][0]["content"]
    assert coordinator_prompt.count("<worker_result id=") == 3


def test_requests_go_through_the_proxy_the_environment_names(tmp_path: Path, api_key: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # The endpoint's name does not resolve; only the proxy (here the fake itself, which answers requests in
    # a proxy's absolute form) can carry the calls: so they reached it through ALL_PROXY, whatever HTTP
    # transport the SDK is given (decision 0014).
    fake = FakeMessagesAPI()

    def through_proxy(fake_url: str) -> om.Provider:
        monkeypatch.setenv("ALL_PROXY", fake_url)
        return om.AnthropicProvider(base_url="http://api.example.invalid")

    result = run_against(fake, tmp_path, make_spec({"a": 2}), provider=through_proxy)
    assert result.status == "done" and len(fake.requests) == 3


def test_rate_limits_and_server_errors_are_waited_out_and_retried(tmp_path: Path, api_key: str) -> None:
    fake = FakeMessagesAPI(error_rate=0.4, seed=3, retry_after_ms=10)
    result = run_against(fake, tmp_path, make_spec({"a": 6, "b": 6}, attempts=8),
                         retry=RetryPolicy(attempts=8, base=0.01))
    assert result.status == "done"
    assert fake.responses[429] > 0 and (fake.responses[500] + fake.responses[529]) > 0
    retried = result.agents[result.agents.attempts > 1]
    assert len(retried) > 0
    assert int(result.agents.attempts.sum()) == len(fake.requests)


def test_a_missing_key_is_a_clear_error_that_suggests_offline(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"ANTHROPIC_API_KEY is not set.*--provider offline"):
        om.run(make_spec({"a": 1}), provider="anthropic", root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_base_url_is_refused_before_the_run(tmp_path: Path, api_key: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9/v1")
    with pytest.raises(ConfigError, match=r"cannot reach the Messages API at http://127.0.0.1:9 "):
        om.run(make_spec({"a": 1}), provider="anthropic", root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_the_api_key_never_reaches_the_run_folder(tmp_path: Path, api_key: str) -> None:
    result = run_against(FakeMessagesAPI(), tmp_path, make_spec({"a": 2}))
    for path in result.path.rglob("*"):
        if path.is_file():
            assert KEY not in path.read_text(), path


def test_offline_needs_no_key_and_says_it_is_simulated(tmp_path: Path) -> None:
    result = om.run(make_spec({"a": 2}), provider="offline", root=tmp_path)
    assert result.status == "done"
    assert result.output("a-1").startswith(SIMULATED_MARK)
    assert result.state.provider == "offline"


def test_workers_and_coordinators_use_their_own_model_and_settings(tmp_path: Path, api_key: str) -> None:
    fake = FakeMessagesAPI()
    roles = {"worker": {"model": "claude-haiku-5-5", "max_tokens": 1024, "effort": "low"},
             "coordinator": {"model": "claude-opus-5-5", "max_tokens": 16000, "thinking": 4000}}
    run_against(fake, tmp_path, make_spec({"a": 2}, model="claude-sonnet-5-5", roles=roles))
    workers, coordinator = fake.requests[:2], fake.requests[2]
    assert {(b["model"], b["max_tokens"], b["output_config"]["effort"]) for b in workers} == {
        ("claude-haiku-5-5", 1024, "low")}
    assert (coordinator["model"], coordinator["max_tokens"]) == ("claude-opus-5-5", 16000)
    assert coordinator["thinking"] == {"type": "enabled", "budget_tokens": 4000}
    assert "thinking" not in workers[0] and "output_config" not in coordinator


def test_the_default_model_is_one_the_sdk_knows_and_has_not_deprecated() -> None:
    from typing import get_args

    from anthropic.resources.messages.messages import DEPRECATED_MODELS
    from anthropic.types.model_param import ModelParam

    from orchestra_magic.spec.model import DEFAULT_MODEL

    known = get_args(get_args(ModelParam)[0])
    assert DEFAULT_MODEL in known and DEFAULT_MODEL not in DEPRECATED_MODELS


def test_the_shared_prefix_is_cached_so_workers_after_the_first_read_it(tmp_path: Path, api_key: str) -> None:
    fake = FakeMessagesAPI()
    context = "Background every agent needs. " * 200  # about 1,500 tokens: over the cacheable minimum
    result = run_against(fake, tmp_path, make_spec({"a": 6}, context=context, concurrency=1))
    assert all(b["system"][0]["cache_control"] == {"type": "ephemeral"} for b in fake.requests)
    workers = result.agents[result.agents.role == "worker"].set_index("agent")
    assert workers.loc["a-1", "cache_write_tokens"] > 1000 and workers.loc["a-1", "cache_read_tokens"] == 0
    later = workers.drop(index="a-1")
    assert (later.cache_read_tokens == workers.loc["a-1", "cache_write_tokens"]).all()
    assert (later.cache_write_tokens == 0).all() and (later.input_tokens < 200).all()  # only the task is full price
    assert fake.cache == {"write": 2, "read": 5}  # one prefix for workers, one for the coordinator


def test_a_short_prefix_is_not_cached(tmp_path: Path, api_key: str) -> None:
    fake = FakeMessagesAPI()
    result = run_against(fake, tmp_path, make_spec({"a": 3}, concurrency=1))
    assert not fake.cache and (result.agents.cache_read_tokens == 0).all()
