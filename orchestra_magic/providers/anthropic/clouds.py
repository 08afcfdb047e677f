"""Claude beyond api.anthropic.com: on AWS Bedrock, Google Vertex AI, Microsoft Foundry, and behind an
Anthropic-compatible `/v1/messages` server (vLLM, llama.cpp, Ollama, a LiteLLM proxy).

Each is the `anthropic` provider (same streaming, error mapping, retries, tool loop) with three things of
its own: the SDK client it builds (`_connect`: credentials from the cloud's usual places, read by the
SDK, boto3 or google-auth and never stored by us), the model id it sends (`cloud_models`), and its
feature `profile` (what is refused before the run and what is left out of requests; see `features`).
`for_workers` copies carry no credential: each Dask worker finds its own, as the first process did.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import anthropic

from ...cloud_models import BEDROCK_PROFILES, cloud_model_id
from ...errors import ConfigError
from .features import PROFILES, compatible_profile
from .provider import AnthropicProvider, _check_key, _check_reachable, http_client

if TYPE_CHECKING:
    from .provider import Client


class BedrockProvider(AnthropicProvider):
    """Claude on Bedrock (`AsyncAnthropicBedrock`). Requests are SigV4-signed with the credentials boto3
    finds (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`, `AWS_PROFILE`, ~/.aws, an
    instance or task role), or carry a Bedrock API key from `AWS_BEARER_TOKEN_BEDROCK`. Region: `region`,
    else `AWS_REGION`/`AWS_DEFAULT_REGION`, else the profile's. `inference_profile`: the cross-region
    prefix of the model id (`global`, or `us`, `eu`, … at the regional premium; None: the bare id)."""

    name = "bedrock"
    batches = False
    profile = PROFILES["bedrock"]

    def __init__(self, *, region: str | None = None, aws_profile: str | None = None,
                 inference_profile: str | None = "global", base_url: str | None = None,
                 timeout: float = 600.0) -> None:
        if inference_profile is not None and inference_profile not in BEDROCK_PROFILES:
            raise ConfigError(f"unknown Bedrock inference profile {inference_profile!r}; "
                              f"choose one of {', '.join(BEDROCK_PROFILES)} (or None for the bare model id)")
        super().__init__(base_url=base_url, timeout=timeout)
        self.region, self.aws_profile, self.inference_profile = region, aws_profile, inference_profile
        self.regional = inference_profile != "global"

    async def _connect(self) -> Client:
        boto3 = _need("boto3", "bedrock", "SigV4 signing and the event-stream decoder")
        try:
            session = boto3.Session(profile_name=self.aws_profile)
        except Exception as exc:  # botocore's ProfileNotFound and kin
            raise ConfigError(f"AWS profile problem: {exc}") from None
        region = (self.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
                  or session.region_name)
        if not region:
            raise ConfigError("no AWS region for Bedrock: set AWS_REGION, give your AWS profile a region, "
                              "or pass region=")
        if not os.environ.get("AWS_BEARER_TOKEN_BEDROCK") and session.get_credentials() is None:
            raise ConfigError("no AWS credentials for Bedrock: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                              "AWS_PROFILE, or AWS_BEARER_TOKEN_BEDROCK (or run where a role provides them)")
        client = anthropic.AsyncAnthropicBedrock(aws_region=region, aws_profile=self.aws_profile,
                                                 base_url=self.base_url, max_retries=0, timeout=self.timeout,
                                                 http_client=http_client(self.timeout))
        return await _reachable(self, client, "ANTHROPIC_BEDROCK_BASE_URL")

    def _model_id(self, model: str) -> str:
        return cloud_model_id("bedrock", model, self.inference_profile)

    def for_workers(self) -> BedrockProvider:
        return BedrockProvider(region=self.region, aws_profile=self.aws_profile,
                               inference_profile=self.inference_profile, base_url=self.base_url,
                               timeout=self.timeout)


class VertexProvider(AnthropicProvider):
    """Claude on Vertex AI (`AsyncAnthropicVertex`). The bearer token: `access_token`, else
    `GOOGLE_OAUTH_ACCESS_TOKEN` (e.g. from `gcloud auth print-access-token`), else Application Default
    Credentials through google-auth (`orchestra_magic[vertex]`). Project: `project_id`, else
    `ANTHROPIC_VERTEX_PROJECT_ID`, `GOOGLE_CLOUD_PROJECT`, or the credentials'. Region: `region`, else
    `CLOUD_ML_REGION`, else `global` (any other region costs the regional premium)."""

    name = "vertex"
    batches = False
    profile = PROFILES["vertex"]

    def __init__(self, *, region: str | None = None, project_id: str | None = None,
                 access_token: str | None = None, base_url: str | None = None, timeout: float = 600.0) -> None:
        super().__init__(base_url=base_url, timeout=timeout)
        self.region, self.project_id = region, project_id
        self._access_token = access_token  # held for this process only: never pickled to workers

    async def _connect(self) -> Client:
        region = self.region or os.environ.get("CLOUD_ML_REGION") or "global"
        project = (self.project_id or os.environ.get("ANTHROPIC_VERTEX_PROJECT_ID")
                   or os.environ.get("GOOGLE_CLOUD_PROJECT") or None)
        token = self._access_token or os.environ.get("GOOGLE_OAUTH_ACCESS_TOKEN") or None
        if token is None:
            _need("google.auth", "vertex", "Application Default Credentials (or set GOOGLE_OAUTH_ACCESS_TOKEN)")
        elif project is None:
            raise ConfigError("no Google Cloud project for Vertex AI: set ANTHROPIC_VERTEX_PROJECT_ID "
                              "or GOOGLE_CLOUD_PROJECT, or pass project_id=")
        self.regional = region != "global"
        extra: dict[str, Any] = {"project_id": project} if project else {}
        client = anthropic.AsyncAnthropicVertex(region=region, access_token=token, base_url=self.base_url,
                                                max_retries=0, timeout=self.timeout,
                                                http_client=http_client(self.timeout), **extra)
        return await _reachable(self, client, "ANTHROPIC_VERTEX_BASE_URL")

    def _model_id(self, model: str) -> str:
        return cloud_model_id("vertex", model)

    def for_workers(self) -> VertexProvider:
        return VertexProvider(region=self.region, project_id=self.project_id, base_url=self.base_url,
                              timeout=self.timeout)


class FoundryProvider(AnthropicProvider):
    """Claude in Microsoft Foundry (`AsyncAnthropicFoundry`). Key: `api_key`, else
    `ANTHROPIC_FOUNDRY_API_KEY`, or a Microsoft Entra token from `azure_ad_token_provider` (from Python).
    Endpoint: `resource` (or `ANTHROPIC_FOUNDRY_RESOURCE`), or `base_url` (or `ANTHROPIC_FOUNDRY_BASE_URL`).
    Deployments are named like the API's models, so model names go as the spec writes them."""

    name = "foundry"
    batches = False
    profile = PROFILES["foundry"]

    def __init__(self, *, resource: str | None = None, base_url: str | None = None, api_key: str | None = None,
                 azure_ad_token_provider: Callable[[], str] | None = None, timeout: float = 600.0) -> None:
        super().__init__(api_key=api_key, base_url=base_url, timeout=timeout)
        self.resource = resource
        self._token_provider = azure_ad_token_provider

    async def _connect(self) -> Client:
        key = self._api_key or os.environ.get("ANTHROPIC_FOUNDRY_API_KEY") or None
        if key is None and self._token_provider is None:
            raise ConfigError("ANTHROPIC_FOUNDRY_API_KEY is not set; set it to your Foundry resource's key "
                              "(or pass azure_ad_token_provider= from Python)")
        if key is not None:
            _check_key(key, "the api_key given" if self._api_key else "ANTHROPIC_FOUNDRY_API_KEY")
        resource = self.resource or (None if self.base_url else os.environ.get("ANTHROPIC_FOUNDRY_RESOURCE"))
        base_url = None if resource else self.base_url or os.environ.get("ANTHROPIC_FOUNDRY_BASE_URL")
        if not resource and not base_url:
            raise ConfigError("no Foundry endpoint: set ANTHROPIC_FOUNDRY_RESOURCE (your resource's name) "
                              "or ANTHROPIC_FOUNDRY_BASE_URL")
        where: dict[str, Any] = {"resource": resource} if resource else {"base_url": base_url}
        client = anthropic.AsyncAnthropicFoundry(api_key=key, azure_ad_token_provider=self._token_provider,
                                                 max_retries=0, timeout=self.timeout,
                                                 http_client=http_client(self.timeout), **where)
        return await _reachable(self, client, "ANTHROPIC_FOUNDRY_BASE_URL")

    def for_workers(self) -> FoundryProvider:
        return FoundryProvider(resource=self.resource, base_url=self.base_url, timeout=self.timeout)


class CompatibleProvider(AnthropicProvider):
    """An Anthropic-compatible Messages server at `base_url` (else `ANTHROPIC_BASE_URL`). `features`: what
    the server accepts beyond plain messages (`features.FEATURES`; none by default): the rest is not
    sent (cache_control, thinking, effort, structured outputs), not read (rate-limit headers) or refused
    before the run (batches, server tools). Key from `ANTHROPIC_API_KEY` when the server wants one."""

    name = "compatible"

    def __init__(self, *, base_url: str | None = None, features: Iterable[str] = (), api_key: str | None = None,
                 timeout: float = 600.0) -> None:
        super().__init__(api_key=api_key, base_url=base_url, timeout=timeout)
        self.profile = compatible_profile(features)
        self.batches = self.profile.has("batches")

    async def _connect(self) -> Client:
        if not (self.base_url or os.environ.get("ANTHROPIC_BASE_URL")):
            raise ConfigError("the compatible provider needs its server's address: set ANTHROPIC_BASE_URL "
                              "(e.g. http://127.0.0.1:8000) or pass base_url=")
        # Local servers mostly take no key; the SDK insists on one, so a marker goes in its place.
        self._api_key = self._api_key or os.environ.get("ANTHROPIC_API_KEY") or "no-key"
        return await super()._connect()

    def for_workers(self) -> CompatibleProvider:
        return CompatibleProvider(base_url=self.base_url, features=self.profile.features, timeout=self.timeout)


def _need(module: str, extra: str, why: str) -> Any:
    """An optional dependency, or one line saying which extra brings it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"the {extra} provider needs {module.split('.')[0]} for {why}: "
                          f'pip install "orchestra_magic[{extra}]"') from None


async def _reachable(provider: AnthropicProvider, client: Client, setting: str) -> Client:
    """Fail before the run, with one line, when nothing listens at the client's endpoint."""
    provider.base_url = str(client.base_url).rstrip("/")
    try:
        await _check_reachable(provider.base_url, setting)
    except BaseException:
        await client.close()
        raise
    return client
