"""Claude on Bedrock, Vertex AI and Foundry, and Anthropic-compatible servers: each provider through the
SDK's own cloud client over real HTTP, against the fake speaking that cloud's paths, body and auth."""

from __future__ import annotations

import asyncio
import json
import math
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import cell, fake_api, make_spec, orchestra

import orchestra_magic as om
from orchestra_magic.cloud_models import base_model, cloud_model_id
from orchestra_magic.errors import ConfigError
from orchestra_magic.fake.clouds import Credentials
from orchestra_magic.fake.server import FakeMessagesAPI
from orchestra_magic.pricing import REGIONAL_PREMIUM, cost_usd, price_of
from orchestra_magic.providers.anthropic.clouds import BedrockProvider, FoundryProvider, VertexProvider

QUICKSTART = Path(__file__).parent.parent / "examples" / "quickstart.yaml"
CREDS = Credentials()


def bedrock_env(url: str) -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": CREDS.aws_access_key, "AWS_SECRET_ACCESS_KEY": CREDS.aws_secret_key,
            "AWS_REGION": "us-east-1", "ANTHROPIC_BEDROCK_BASE_URL": url}


def vertex_env(url: str) -> dict[str, str]:
    return {"GOOGLE_OAUTH_ACCESS_TOKEN": CREDS.google_token, "ANTHROPIC_VERTEX_PROJECT_ID": "test-project",
            "CLOUD_ML_REGION": "us-east5", "ANTHROPIC_VERTEX_BASE_URL": f"{url}/v1"}


def foundry_env(url: str) -> dict[str, str]:
    return {"ANTHROPIC_FOUNDRY_API_KEY": CREDS.foundry_key, "ANTHROPIC_FOUNDRY_BASE_URL": f"{url}/anthropic/"}


def run_in_cloud(fake: FakeMessagesAPI, monkeypatch: pytest.MonkeyPatch, env: Callable[[str], dict[str, str]],
                 spec: Any, provider: str | om.Provider, root: Path) -> om.Run:
    """Start the fake, put the cloud's settings where its tools look for them, run `spec` by `provider`."""

    async def main() -> om.Run:
        url = await fake.start()
        for name, value in env(url).items():
            monkeypatch.setenv(name, value)
        try:
            return await om.arun(spec, provider=provider, root=root)
        finally:
            await fake.stop()

    return asyncio.run(main())


# cloud, its settings, the paths of a plain and of a streamed call, the model id sent for claude-sonnet-5-5,
# price factor
CLOUDS = [
    ("bedrock", bedrock_env, "/model/global.anthropic.claude-sonnet-5-5-v1/invoke",
     "/model/global.anthropic.claude-sonnet-5-5-v1/invoke-with-response-stream",
     "global.anthropic.claude-sonnet-5-5-v1", 1.0),
    ("vertex", vertex_env,
     "/v1/projects/test-project/locations/us-east5/publishers/anthropic/models/claude-sonnet-5-5:rawPredict",
     "/v1/projects/test-project/locations/us-east5/publishers/anthropic/models/claude-sonnet-5-5:streamRawPredict",
     "claude-sonnet-5-5", REGIONAL_PREMIUM),
    ("foundry", foundry_env, "/anthropic/v1/messages", "/anthropic/v1/messages", "claude-sonnet-5-5", 1.0),
]
CLOUD_PROVIDERS = {"bedrock": BedrockProvider, "vertex": VertexProvider, "foundry": FoundryProvider}


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize(("cloud", "env", "plain_path", "stream_path", "model_id", "factor"), CLOUDS,
                         ids=[c[0] for c in CLOUDS])
def test_each_cloud_runs_the_quickstart_through_its_own_sdk_client(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cloud: str, env: Callable[[str], dict[str, str]],
        plain_path: str, stream_path: str, model_id: str, factor: float, streamed: bool) -> None:
    fake = FakeMessagesAPI()
    # A client timeout under a 4,096-token answer's worst case makes the provider stream (see nonstreamed).
    provider: str | om.Provider = CLOUD_PROVIDERS[cloud](timeout=60.0) if streamed else cloud
    result = run_in_cloud(fake, monkeypatch, env, str(QUICKSTART), provider, tmp_path)
    assert result.status == "done" and len(result.agents) == 25
    sent = fake.clouds.requests
    assert len(sent) == 25 and {c for c, _, _ in sent} == {cloud}
    assert {p for _, p, _ in sent} == {stream_path if streamed else plain_path}
    assert {bool(body.get("stream")) for body in fake.requests} == {streamed}
    assert all(body.get("anthropic_version") for _, _, body in sent) or cloud == "foundry"
    assert {body["model"] for body in fake.requests} == {model_id}
    agent = result.agents.iloc[0]
    plain = cost_usd("claude-sonnet-5-5", int(agent.input_tokens), int(agent.output_tokens),
                     int(agent.cache_write_tokens), int(agent.cache_read_tokens))
    assert plain is not None and agent.cost_usd == pytest.approx(plain * factor)


def test_bedrock_requests_are_sigv4_signed_and_a_wrong_secret_is_refused(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def wrong_secret(url: str) -> dict[str, str]:  # another region: the SDK caches boto3 sessions per region
        return {**bedrock_env(url), "AWS_SECRET_ACCESS_KEY": "not-the-secret", "AWS_REGION": "eu-west-1"}

    fake = FakeMessagesAPI()
    result = run_in_cloud(fake, monkeypatch, wrong_secret, make_spec({"a": 1}, attempts=1), "bedrock", tmp_path)
    assert result.status == "failed"
    assert "signature we calculated does not match" in result.agents.error[0]
    assert fake.responses[403] == 1 and not fake.answers
    run_files = "".join(p.read_text() for p in result.path.rglob("*") if p.is_file())
    assert "not-the-secret" not in run_files and "AWS4-HMAC-SHA256" not in run_files


def test_a_bedrock_api_key_goes_as_a_bearer_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def api_key(url: str) -> dict[str, str]:
        return {"AWS_BEARER_TOKEN_BEDROCK": CREDS.bedrock_api_key, "AWS_REGION": "us-west-2",
                "ANTHROPIC_BEDROCK_BASE_URL": url}

    fake = FakeMessagesAPI()
    provider = om.BedrockProvider(inference_profile="us")
    result = run_in_cloud(fake, monkeypatch, api_key, make_spec({"a": 2}, model="claude-haiku-4-5"), provider,
                          tmp_path)
    assert result.status == "done"
    assert {body["model"] for body in fake.requests} == {"us.anthropic.claude-haiku-4-5-20251001-v1:0"}
    assert (result.agents.cost_usd > 0).all()  # priced through the cloud id, with the regional premium


REFUSED = [
    ("bedrock", {"mode": "batch"}, "the bedrock provider cannot send the workers' mode: batch"),
    ("vertex", {"roles": {"coordinator": {"mode": "batch"}}}, "the vertex provider cannot send the coordinators'"),
    ("foundry", {"mode": "batch"}, "the foundry provider cannot send the workers' mode: batch"),
    ("bedrock", {"tools": ["web_search"]}, "does not offer the server tool 'web_search' .*server tools there: none"),
    ("vertex", {"tools": ["web_fetch"]}, "does not offer the server tool 'web_fetch' .*there: web_search"),
    ("compatible", {"tools": ["code_execution"]}, "does not offer the server tool 'code_execution'"),
    ("compatible", {"mode": "batch"}, "the compatible provider cannot send the workers' mode: batch"),
    ("compatible", {"roles": {"worker": {"output": {"price": "number"}}}},
     "the compatible provider is not set to send structured outputs, which the workers' `output` needs"),
]


@pytest.mark.parametrize(("provider", "settings", "message"), REFUSED)
def test_what_a_cloud_does_not_offer_is_refused_before_the_run(tmp_path: Path, provider: str,
                                                               settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        om.run(make_spec({"a": 1}, **settings), provider=provider, root=tmp_path)
    assert list(tmp_path.iterdir()) == []


MISSING = [
    ("bedrock", {}, "no AWS region for Bedrock: set AWS_REGION"),
    ("bedrock", {"AWS_REGION": "us-east-1"}, "no AWS credentials for Bedrock"),
    ("vertex", {"GOOGLE_OAUTH_ACCESS_TOKEN": "t"}, "no Google Cloud project for Vertex AI"),
    ("foundry", {}, "ANTHROPIC_FOUNDRY_API_KEY is not set"),
    ("foundry", {"ANTHROPIC_FOUNDRY_API_KEY": "k"}, "no Foundry endpoint: set ANTHROPIC_FOUNDRY_RESOURCE"),
    ("compatible", {}, "the compatible provider needs its server's address: set ANTHROPIC_BASE_URL"),
    ("bedrock", {"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b",
                 "ANTHROPIC_BEDROCK_BASE_URL": "http://127.0.0.1:9"},
     "cannot reach the Messages API at http://127.0.0.1:9 .*Check ANTHROPIC_BEDROCK_BASE_URL"),
]


@pytest.mark.parametrize(("provider", "env", "message"), MISSING)
def test_missing_cloud_settings_are_one_line_naming_where_to_put_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, provider: str, env: dict[str, str], message: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        om.run(make_spec({"a": 1}), provider=provider, root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_compatible_profile_runs_thinking_and_effort_against_a_strict_server(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    spec = make_spec({"a": 3}, thinking="adaptive", effort="high", max_tokens=2000, attempts=1)
    direct = FakeMessagesAPI(strict=True)  # the anthropic provider sends all three: every worker gets a 400
    failed = run_in_cloud(direct, monkeypatch, lambda url: {"ANTHROPIC_API_KEY": "k", "ANTHROPIC_BASE_URL": url},
                          spec, "anthropic", tmp_path / "direct")
    assert failed.status == "failed" and direct.responses[400] == 3 and not direct.answers
    fake = FakeMessagesAPI(strict=True)
    result = run_in_cloud(fake, monkeypatch, lambda url: {"ANTHROPIC_BASE_URL": url}, spec, "compatible",
                          tmp_path / "compatible")
    assert result.status == "done" and fake.responses[400] == 0
    sent = json.dumps(fake.requests)
    assert "cache_control" not in sent and "thinking" not in sent and "effort" not in sent


def test_a_compatible_profile_sends_the_features_it_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeMessagesAPI()
    provider = om.CompatibleProvider(features=["thinking", "cache_control"])
    result = run_in_cloud(fake, monkeypatch, lambda url: {"ANTHROPIC_BASE_URL": url},
                          make_spec({"a": 1}, thinking="adaptive", effort="low"), provider, tmp_path)
    assert result.status == "done"
    assert all(body["thinking"] == {"type": "adaptive"} and "output_config" not in body for body in fake.requests)
    assert all(body["system"][0]["cache_control"] for body in fake.requests)


def test_an_unknown_compatible_feature_is_one_line() -> None:
    with pytest.raises(ConfigError, match="unknown feature 'caching' for the compatible provider; choose from"):
        om.CompatibleProvider(features=["caching"])


def test_a_model_a_compatible_server_names_has_no_cost_not_zero(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeMessagesAPI()
    result = run_in_cloud(fake, monkeypatch, lambda url: {"ANTHROPIC_BASE_URL": url},
                          make_spec({"a": 2}, model="qwen3-32b"), "compatible", tmp_path)
    assert result.status == "done" and (result.agents.input_tokens > 0).all()
    assert result.agents.cost_usd.isna().all() and math.isnan(result.summaries.cost_usd[0])


IDS = [
    ("bedrock", "claude-sonnet-4-5", "global", "global.anthropic.claude-sonnet-4-5-20250929-v1:0"),
    ("bedrock", "claude-opus-4-6", None, "anthropic.claude-opus-4-6-v1"),
    ("vertex", "claude-haiku-4-5", None, "claude-haiku-4-5@20251001"),
    ("vertex", "claude-sonnet-5-5", None, "claude-sonnet-5-5"),
    ("bedrock", "arn:aws:bedrock:us-east-1:1:inference-profile/x", "global",
     "arn:aws:bedrock:us-east-1:1:inference-profile/x"),
]


@pytest.mark.parametrize(("cloud", "model", "profile", "expected"), IDS)
def test_model_ids_take_each_clouds_form_and_price_as_their_model(cloud: str, model: str, profile: str | None,
                                                                  expected: str) -> None:
    assert cloud_model_id(cloud, model, profile) == expected
    assert base_model(expected) == (model if not model.startswith("arn:") else expected)
    assert price_of(expected) == price_of(model)


def test_the_cli_runs_the_quickstart_on_bedrock_by_name(tmp_path: Path) -> None:
    with fake_api() as env:
        url = env.pop("ANTHROPIC_BASE_URL")
        env.pop("ANTHROPIC_API_KEY")
        result = orchestra("run", str(QUICKSTART), "--provider", "bedrock", cwd=tmp_path,
                           env={**env, **bedrock_env(url)})
    assert result.returncode == 0, result.stderr
    assert "25 agents: 25 done" in result.stdout
    (folder,) = (tmp_path / "orchestration").iterdir()
    assert json.loads((folder / "run.json").read_text())["provider"] == "bedrock"


def test_a_notebook_cell_runs_on_vertex_by_name(shell: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with fake_api() as env:
        for name, value in vertex_env(env["ANTHROPIC_BASE_URL"]).items():
            monkeypatch.setenv(name, value)
        summaries = cell(shell, f"%%orchestrate --provider vertex -o r\n{QUICKSTART.read_text()}")
    assert len(summaries) == 4 and (summaries.status == "done").all()
    assert shell.user_ns["r"].agents.cost_usd.notna().all()


SECRETS = [
    lambda: om.VertexProvider(region="us-east5", project_id="p", access_token="ya29.SECRET-token"),
    lambda: om.FoundryProvider(resource="r", api_key="SECRET-foundry-key"),
    lambda: om.CompatibleProvider(base_url="http://127.0.0.1:1", api_key="SECRET-compatible-key"),
    lambda: om.BedrockProvider(region="us-east-1", aws_profile="team"),
]


@pytest.mark.parametrize("make", SECRETS)
def test_the_copy_sent_to_dask_workers_carries_no_credential(make: Callable[[], om.Provider]) -> None:
    provider = make()
    shipped = pickle.dumps(provider.for_workers())
    assert b"SECRET" not in shipped and type(pickle.loads(shipped)) is type(provider)
