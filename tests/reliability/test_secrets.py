"""No secret, ever, in a file: the API key, a URL's password and cloud credentials never reach the run
folder, the journal, the manifest, or anything printed, whatever an error echoes; a key no header can carry
is refused up front; and stored error texts are bounded."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
import yaml
from helpers import fake_api, make_spec, orchestra, run_against
from rich.console import Console

import orchestra_magic as om
from orchestra_magic import cli
from orchestra_magic.display.summary import print_run
from orchestra_magic.engine.retry import RetryPolicy
from orchestra_magic.engine.scheduler import Engine
from orchestra_magic.errors import ConfigError, TransientAgentError
from orchestra_magic.fake.server import FakeMessagesAPI
from orchestra_magic.providers.anthropic.provider import AnthropicProvider
from orchestra_magic.redaction import MAX_ERROR_CHARS, redact
from orchestra_magic.runfolder.folder import RunFolder
from orchestra_magic.spec.load import load_spec
from orchestra_magic.state.events import AgentFinished
from orchestra_magic.state.run import RunState

MARKER = "sk-ant-MARKER-7f3a9c-never-written"
FAST = RetryPolicy(attempts=2, base=0.001, cap=0.01, max_wait=0.01)


def test_a_marker_key_appears_nowhere_after_a_run_with_errors(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    # max_wait: 429s and 529s are retried at once, not after seconds of backoff (the errors are the point)
    spec.write_text(yaml.safe_dump(make_spec({"a": 4, "b": 4}, attempts=2, max_wait=0.1)))
    with fake_api("--error-rate", "0.5", "--seed", "4") as env:
        result = orchestra("run", str(spec), cwd=tmp_path, env={**env, "ANTHROPIC_API_KEY": MARKER})
    assert "failed" in result.stdout or "done" in result.stdout  # the run happened, with retries or failures
    assert MARKER not in result.stdout + result.stderr
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) > 10
    for path in written:
        assert MARKER not in path.read_text(errors="replace"), path


KEY = "sk-ant-api03-ECHOED-3b9d-never-written"


def _everything_written(root: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file())


def _printed(run: om.Run) -> str:
    console = Console(record=True, width=200)
    print_run(run, console)
    return console.export_text()


def test_an_error_page_that_echoes_the_request_headers_is_stored_and_shown_without_the_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    retried: list[str] = []
    run = run_against(FakeMessagesAPI(fault_rates={"echo_headers": 1.0}), tmp_path, make_spec({"d": 2}),
                      retry=FAST, listeners=(lambda e, _: retried.append(getattr(e, "error", "")),))
    error = run.state.agents["d-1"].error
    assert "bad gateway" in error and '"Authorization": "[redacted]"' in error  # the message is kept, the key not
    assert KEY not in _everything_written(tmp_path) + _printed(run) + "".join(retried)
    assert "sk-ant-" not in error


def test_a_password_in_the_base_url_is_kept_out_of_errors_files_and_the_providers_repr(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    fake = FakeMessagesAPI()

    async def main() -> RunState:
        url = (await fake.start()).replace("http://", "http://alice:pw-9f2c-SECRET@")
        provider = AnthropicProvider(base_url=url)
        await provider.start()
        await fake.stop()  # the endpoint goes away mid-run: every call's error names it
        assert "pw-9f2c-SECRET" not in repr(provider) and "[redacted]@127.0.0.1" in repr(provider)
        try:
            spec = load_spec(make_spec({"d": 1}))
            return await Engine(spec, provider, RunFolder.create(tmp_path, "r"), retry=FAST).run()
        finally:
            await provider.close()

    state = asyncio.run(main())
    assert "lost the connection to http://[redacted]@127.0.0.1:" in state.agents["d-1"].error
    unreachable = r"cannot reach the Messages API at http://\[redacted\]@127.0.0.1:"
    with pytest.raises(ConfigError, match=unreachable) as refused:
        asyncio.run(AnthropicProvider(base_url=fake_url_with_password()).start())
    assert "pw-9f2c-SECRET" not in _everything_written(tmp_path) + str(refused.value)


def fake_url_with_password() -> str:
    """A URL with a password where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://alice:pw-9f2c-SECRET@127.0.0.1:{probe.getsockname()[1]}"


@pytest.mark.parametrize(("key", "problem"), [
    ("sk-ant-abc\n", "leading or trailing whitespace (a space or line break pasted with it)"),
    ("sk-ant-abc\r\n", "leading or trailing whitespace (a space or line break pasted with it)"),
    (" sk-ant-abc", "leading or trailing whitespace (a space or line break pasted with it)"),
    ("sk-ant-abc ", "leading or trailing whitespace (a space or line break pasted with it)"),
    ("sk-ant-a\nbc", "a line break at character 9"),
    ("sk-ant-a\rbc", "a line break at character 9"),
    ("sk-ant-ab\u00e9c", "a character no HTTP header can carry (U+00E9) at character 10"),
])
def test_a_key_no_header_can_carry_is_refused_up_front_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        key: str, problem: str) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(make_spec({"d": 1})))
    monkeypatch.setenv("ANTHROPIC_API_KEY", key)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")  # never reached: the key is refused first
    assert cli.main(["run", str(spec), "--root", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"orchestra: ANTHROPIC_API_KEY has {problem}; set it to the key exactly as issued (the key is " \
                  "not shown here)"
    assert not (tmp_path / "runs").exists()


def test_a_five_megabyte_error_on_every_worker_keeps_run_json_small(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    run = run_against(FakeMessagesAPI(fault_rates={"huge_error": 1.0}), tmp_path, make_spec({"d": 4}), retry=FAST)
    for worker in ("d-1", "d-2", "d-3", "d-4"):
        error = run.state.agents[worker].error
        assert len(error) <= MAX_ERROR_CHARS
        assert error.endswith(f"characters in all, the first {MAX_ERROR_CHARS:,} kept]")
    assert (run.path / "run.json").stat().st_size < 20_000  # 4 x 5 MB of errors, 2 KB each at most


@pytest.mark.parametrize("credential", [
    'x-api-key: sk-ant-api03-abc',
    '"Authorization": "Bearer sk-ant-api03-abc"',
    "{'authorization': 'Bearer ya29.a0AfH6SMBxSECRET'}",  # a Google OAuth token
    "Authorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/bedrock/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024",
    "X-Amz-Security-Token: IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJH",
    "https://bucket.s3.amazonaws.com/o?X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F2026&X-Amz-Signature=fe5f80f77d",
    "GET https://host/v1?api_key=abc123SECRET&x=1&token=tok456SECRET&key=AIzaSyA-1234567890abcdefghijklmnopqr",
    "proxy https://user:hunter2SECRET@proxy.example.com:8080 refused",
    "password=hunter2SECRET, client_secret: 'xyzSECRET'",
])
def test_keys_and_cloud_credentials_are_redacted_from_any_error_text(credential: str) -> None:
    error = TransientAgentError(f"HTTP 502 api_error: upstream said {credential}")
    for text in (str(error), AgentFinished(agent="a", at=0.0, status="failed", error=credential).error):
        assert "[redacted]" in text
        for secret in ("sk-ant-api03-abc", "SECRET", "ya29.", "AKIAIOSFODNN7EXAMPLE", "fe5f80f77d", "IQoJb3J",
                       "AIzaSy", "hunter2"):
            assert secret not in text, text
    assert redact(redact(credential)) == redact(credential)  # stored texts pass again unchanged


def test_error_texts_that_name_no_credential_are_left_as_they_are() -> None:
    plain = "HTTP 400 invalid_request_error: max_tokens: field required (a positive integer); input_tokens: 5"
    assert redact(plain) == plain
