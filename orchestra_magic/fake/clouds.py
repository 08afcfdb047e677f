"""The fake's cloud endpoints: Claude as Bedrock, Vertex AI and Foundry serve it, so the cloud providers
run through the SDK's own cloud clients over real HTTP, and an Anthropic-compatible server's strictness.

Each route checks what the cloud checks, translates the request into a Messages body and lets the
server answer it (`FakeMessagesAPI.respond`):
- **Bedrock**: `POST /model/<id>/invoke` (JSON) and `/invoke-with-response-stream` (the AWS event stream:
  binary frames with CRCs, each carrying one event as base64 JSON, which the SDK decodes with botocore).
  The model is in the path, not the body; the body carries `anthropic_version`. Requests must be
  SigV4-signed: the signature is recomputed with botocore from `Credentials.aws_*` (or a Bedrock API key
  sent as a bearer token must match `bedrock_api_key`).
- **Vertex AI**: `POST /v1/projects/<p>/locations/<l>/publishers/anthropic/models/<model>:rawPredict`
  (JSON) or `:streamRawPredict` (server-sent events), `anthropic_version` in the body, the model in the
  path, and a bearer token that must equal `google_token`.
- **Foundry**: `POST /anthropic/v1/messages` (the Messages API under the resource's `/anthropic` path),
  with the key in `api-key` (and `x-api-key`).
`requests` gets the translated bodies; `cloud_requests` what each cloud route was sent, as sent.
"""

from __future__ import annotations

import base64
import hmac
import json
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .wire import ApiError, bad_request, read_json

if TYPE_CHECKING:
    from .server import FakeMessagesAPI

Frame = Callable[[dict[str, Any]], bytes]  # how one streamed event goes on the wire
EVENT_STREAM = "application/vnd.amazon.eventstream"
_SIGV4 = re.compile(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
                    r"SignedHeaders=([^,]+), Signature=([0-9a-f]{64})")


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the fake clouds accept. Test values, never real ones: tests set them in the environment
    where the SDK, boto3 and the providers look for credentials."""

    aws_access_key: str = "AKIAFAKEORCHESTRA000"
    aws_secret_key: str = "fake-secret-key-for-the-orchestra-fake-bedrock"
    aws_session_token: str | None = None
    bedrock_api_key: str = "fake-bedrock-api-key"
    google_token: str = "ya29.fake-google-token"
    foundry_key: str = "fake-foundry-key"


class CloudRoutes:
    def __init__(self, api: FakeMessagesAPI, credentials: Credentials) -> None:
        self.api, self.credentials = api, credentials
        self.requests: list[tuple[str, str, dict[str, Any]]] = []  # (cloud, path, body as sent)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/model/{model}/invoke", self._bedrock)
        router.add_post("/model/{model}/invoke-with-response-stream", self._bedrock)
        router.add_post("/v1/projects/{project}/locations/{region}/publishers/anthropic/models/{call}", self._vertex)
        router.add_post("/anthropic/v1/messages", self._foundry)

    async def _bedrock(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self._check_aws(request, raw)
        body = self._recorded("bedrock", request, json.loads(raw) if raw else None)
        if "model" in body or "stream" in body:
            raise bad_request("Bedrock takes the model and streaming from the path, not the body")
        stream = request.path.endswith("-with-response-stream")
        return await self._answer(request, {**body, "model": request.match_info["model"], "stream": stream},
                                  frame=event_stream_frame if stream else None)

    async def _vertex(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.credentials.google_token}":
            raise ApiError(401, "authentication_error", "Request had invalid authentication credentials.")
        model, _, method = request.match_info["call"].rpartition(":")
        if method not in ("rawPredict", "streamRawPredict") or not model:
            raise ApiError(404, "not_found_error", f"no such method: {request.match_info['call']}")
        body = self._recorded("vertex", request, await read_json(request))
        if "model" in body:
            raise bad_request("Vertex AI takes the model from the path, not the body")
        if bool(body.get("stream")) != (method == "streamRawPredict"):
            raise bad_request(f"{method} does not match stream={body.get('stream')!r}")
        return await self._answer(request, {**body, "model": model}, frame=None)

    async def _foundry(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("api-key") != self.credentials.foundry_key:
            raise ApiError(401, "authentication_error", "Access denied due to invalid subscription key.")
        body = self._recorded("foundry", request, await read_json(request))
        self.api.requests.append(body)
        return await self.api.respond(request, body)

    def _recorded(self, cloud: str, request: web.Request, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request("request body must be a JSON object")
        self.requests.append((cloud, request.path, body))
        if cloud != "foundry" and not isinstance(body.get("anthropic_version"), str):
            raise bad_request("anthropic_version: field required")
        return body

    async def _answer(self, request: web.Request, body: dict[str, Any], frame: Frame | None) -> web.StreamResponse:
        self.api.requests.append(body)
        return await (self.api.respond(request, body, frame) if frame else self.api.respond(request, body))

    def _check_aws(self, request: web.Request, raw: bytes) -> None:
        """A Bedrock API key as a bearer token, or a SigV4 signature recomputed from the test credentials."""
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            if not hmac.compare_digest(auth[7:], self.credentials.bedrock_api_key):
                raise ApiError(403, "permission_error", "Invalid API key.")
            return
        match = _SIGV4.fullmatch(auth)
        if match is None:
            raise ApiError(403, "permission_error", "Missing Authentication Token")
        access_key, _, region, service, signed, signature = match.groups()
        creds = self.credentials
        if access_key != creds.aws_access_key or request.headers.get("X-Amz-Security-Token") != creds.aws_session_token:
            raise ApiError(403, "permission_error", "The security token included in the request is invalid.")
        if not hmac.compare_digest(signature, _sigv4(request, raw, signed.split(";"), region, service, creds)):
            raise ApiError(403, "permission_error", "The request signature we calculated does not match the "
                           "signature you provided. Check your AWS Secret Access Key and signing method.")


def _sigv4(request: web.Request, raw: bytes, signed: list[str], region: str, service: str,
           credentials: Credentials) -> str:
    """The signature botocore computes for this request, as AWS recomputes it on its side."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials as AwsCredentials

    headers = {name: request.headers.get(name, "") for name in signed}
    url = f"{request.scheme}://{request.host}{request.raw_path}"
    aws = AWSRequest(method=request.method, url=url, headers=headers, data=raw)
    aws.context["timestamp"] = request.headers.get("X-Amz-Date", "")
    signer = SigV4Auth(AwsCredentials(credentials.aws_access_key, credentials.aws_secret_key,
                                      credentials.aws_session_token), service, region)
    return str(signer.signature(signer.string_to_sign(aws, signer.canonical_request(aws)), aws))


def event_stream_frame(event: dict[str, Any]) -> bytes:
    """One event as Bedrock streams it: an AWS event-stream message (prelude with lengths and a CRC32,
    string headers, the payload, a CRC32 of it all) whose payload is `{"bytes": base64(event JSON)}`."""
    payload = json.dumps({"bytes": base64.b64encode(json.dumps(event).encode()).decode()}).encode()
    headers = b"".join(
        bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(value)) + value.encode()
        for name, value in ((":event-type", "chunk"), (":content-type", "application/json"),
                            (":message-type", "event")))
    prelude = struct.pack(">II", 16 + len(headers) + len(payload), len(headers))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + headers + payload
    return message + struct.pack(">I", zlib.crc32(message))


def refuse_extensions(body: dict[str, Any]) -> None:
    """What a strict Anthropic-compatible server does with the API's extensions it lacks: a 400 each."""
    if "cache_control" in json.dumps([body.get("system"), body.get("messages"), body.get("tools")]):
        raise bad_request("cache_control: Extra inputs are not permitted (this server has no prompt caching)")
    if "thinking" in body:
        raise bad_request("thinking: Extra inputs are not permitted")
    if isinstance(body.get("output_config"), dict) and "effort" in body["output_config"]:
        raise bad_request("output_config.effort: Extra inputs are not permitted")
