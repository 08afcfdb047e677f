"""Tools end to end: the real SDK over real HTTP against the fake Messages API, which records what it
was asked (tool definitions, tool results, thinking blocks) and answers by the rules in `faketools`."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest
from helpers import cell, make_spec, orchestra, run_against

import orchestra_magic as om
from orchestra_magic.errors import ConfigError
from orchestra_magic.fake.server import FakeMessagesAPI
from orchestra_magic.fake.tools import sign
from orchestra_magic.pricing import cost_usd as om_cost

KEY = "sk-ant-test-tools"


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    yield KEY


def worker_spec(tools: list[str], **settings: Any) -> dict[str, Any]:
    """One domain, one worker (`a-1`) with `tools`; the coordinator has none."""
    return make_spec({"a": 1}, roles={"worker": {"tools": tools, **settings}})


def worker_requests(fake: FakeMessagesAPI) -> list[dict[str, Any]]:
    return [body for body in fake.requests if "tools" in body]


def lookup_price(vendor: str, tier: int = 1) -> str:
    """Look up a vendor's list price.

    Args:
        vendor: The vendor's name.
        tier: The pricing tier, 1 to 3.
    """
    return f"{vendor} costs $42 at tier {tier}"


# ---- server tools ------------------------------------------------------------------------------------


def test_a_server_tool_is_passed_through_and_its_blocks_stay_out_of_the_text(tmp_path: Path) -> None:
    fake = FakeMessagesAPI()
    result = run_against(fake, tmp_path, worker_spec(["web_search"]))
    assert result.status == "done"
    (request,) = worker_requests(fake)
    assert request["tools"] == [{"type": "web_search_20260318", "name": "web_search"}]
    assert "anthropic-beta" not in json.dumps(request)
    text = result.output("a-1")
    assert "- web_search: [simulated] Result 1 for: Task 1 of a." in text  # the answer used the search
    assert "srvtoolu_" not in text and "encrypted_content" not in text  # only text blocks reach the file
    agents = result.agents.set_index("agent")
    assert agents.loc["a-1", "server_tool_calls"] == 1 and agents.loc["a-1", "tool_calls"] == 0
    assert fake.answers[0]["usage"]["server_tool_use"] == {"web_search_requests": 1, "web_fetch_requests": 0}


def test_a_paused_server_turn_is_sent_back_as_is_and_continued(tmp_path: Path) -> None:
    fake = FakeMessagesAPI()
    result = run_against(fake, tmp_path, worker_spec(["web_search", "web_fetch", "code_execution_20250522"]))
    assert result.status == "done"
    first, second, third = worker_requests(fake)
    assert [a["stop_reason"] for a in fake.answers[:3]] == ["pause_turn", "pause_turn", "end_turn"]
    assert [b["type"] for b in second["messages"][1]["content"]] == ["server_tool_use", "web_search_tool_result"]
    assert [m["role"] for m in third["messages"]] == ["user", "assistant"]  # one turn, continued twice
    sent_back = [b["type"] for b in third["messages"][1]["content"]]
    assert sent_back == ["server_tool_use", "web_search_tool_result", "server_tool_use", "web_fetch_tool_result"]
    assert {"type": "code_execution_20250522", "name": "code_execution"} in first["tools"]
    text = result.output("a-1")
    assert "- web_fetch: [simulated] Page about" in text and "- code_execution: [simulated] 42" in text
    assert result.agents.set_index("agent").loc["a-1", "server_tool_calls"] == 3


# ---- Python tools ------------------------------------------------------------------------------------


def test_a_python_tool_is_called_and_its_result_fed_back_with_usage_summed(tmp_path: Path) -> None:
    fake = FakeMessagesAPI()
    result = run_against(fake, tmp_path, worker_spec(["lookup_price"]), tools=[lookup_price])
    assert result.status == "done"
    first, second = worker_requests(fake)
    (definition,) = first["tools"]
    assert definition["name"] == "lookup_price" and definition["description"] == "Look up a vendor's list price."
    schema = definition["input_schema"]
    assert schema["required"] == ["vendor"] and schema["properties"]["tier"]["type"] == "integer"
    assert schema["properties"]["vendor"]["description"] == "The vendor's name."
    assistant, results = second["messages"][1], second["messages"][2]
    assert assistant["role"] == "assistant" and assistant["content"][0]["type"] == "tool_use"
    assert results["content"] == [{"type": "tool_result", "tool_use_id": assistant["content"][0]["id"],
                                   "content": "[simulated] vendor costs $42 at tier 1"}]
    assert "- lookup_price: [simulated] vendor costs $42 at tier 1" in result.output("a-1")
    worker = result.agents.set_index("agent").loc["a-1"]
    assert worker.tool_calls == 1
    worker_answers = fake.answers[:2]
    assert worker.input_tokens == sum(a["usage"]["input_tokens"] for a in worker_answers)
    assert worker.output_tokens == sum(a["usage"]["output_tokens"] for a in worker_answers)
    manifest = json.loads((result.path / "run.json").read_text())
    assert {a["agent"]: a["tool_calls"] for a in manifest["agents"]} == {"a-1": 1, "coordinator:a": 0}


def test_async_tools_and_structured_results_work_too(tmp_path: Path) -> None:
    async def rates(currency: str) -> dict[str, float]:
        """Exchange rates for a currency."""
        await asyncio.sleep(0)
        return {"EUR": 0.9, "GBP": 0.8}

    fake = FakeMessagesAPI()
    result = run_against(fake, tmp_path, worker_spec(["rates"]), tools={"rates": rates})
    assert result.status == "done"
    assert worker_requests(fake)[1]["messages"][2]["content"][0]["content"] == '{"EUR": 0.9, "GBP": 0.8}'


def test_a_tool_that_raises_becomes_an_error_result_and_the_agent_goes_on(tmp_path: Path) -> None:
    def broken_lookup(vendor: str) -> str:
        """Always fails."""
        raise ValueError(f"no price list for {vendor}")

    fake = FakeMessagesAPI()
    result = run_against(fake, tmp_path, worker_spec(["broken_lookup"]), tools=[broken_lookup])
    assert result.status == "done"
    (tool_result,) = worker_requests(fake)[1]["messages"][2]["content"]
    assert tool_result["is_error"] is True
    assert tool_result["content"] == "ValueError: no price list for [simulated] vendor"
    assert "- broken_lookup (error): ValueError: no price list" in result.output("a-1")


def test_arguments_are_checked_against_the_type_hints_before_the_call(tmp_path: Path) -> None:
    calls: list[int] = []

    def count(n: int, flag: bool) -> str:
        """Needs an int and a bool."""
        calls.append(n)
        return "counted"

    # The fake fills `n` (an integer) and `flag` (a boolean) from the schema: the call goes through.
    result = run_against(FakeMessagesAPI(), tmp_path, worker_spec(["count"]), tools=[count])
    assert result.status == "done" and calls == [1]
    import pydantic

    from orchestra_magic.providers.anthropic.toolloop import error_text
    from orchestra_magic.tools.catalog import python_tool

    with pytest.raises(pydantic.ValidationError) as caught:
        asyncio.run(python_tool("count", count).call({"n": "many"}))
    assert calls == [1]  # refused before the function ran
    assert error_text(caught.value) == ("invalid arguments: n: Input should be a valid integer, unable to parse "
                                        "string as an integer; flag: Missing required argument")


def test_more_tool_turns_than_allowed_fail_the_agent_clearly(tmp_path: Path) -> None:
    def first_step(query: str) -> str:
        """Step one."""
        return "one"

    def second_step(query: str) -> str:
        """Step two."""
        return "two"

    tools = [first_step, second_step]  # the fake calls each once: two tool turns
    spec = worker_spec(["first_step", "second_step"], max_tool_turns=1)
    fake = FakeMessagesAPI()
    failed = run_against(fake, tmp_path, spec, tools=tools)
    assert failed.status == "failed"
    error = failed.agents.set_index("agent").loc["a-1", "error"]
    assert "used all 1 tool turn (max_tool_turns)" in error and "it asked for second_step" in error
    assert "roles.worker.max_tool_turns" in error and "input and" in error
    # The turns it did were billed: the run's cost (and so its budget) counts them.
    turns = fake.answers  # both the worker's (the coordinator did not run: all of its workers failed)
    worker = failed.agents.set_index("agent").loc["a-1"]
    assert [a["stop_reason"] for a in turns] == ["tool_use", "tool_use"]
    assert worker.input_tokens == sum(a["usage"]["input_tokens"] for a in turns) > 0
    assert worker.cost_usd == pytest.approx(cost_of(turns)) and worker.cost_usd > 0
    assert failed.state.cost_usd == pytest.approx(worker.cost_usd)
    assert worker.tool_calls == 1  # first_step ran before the loop gave up
    enough = run_against(FakeMessagesAPI(), tmp_path, worker_spec(["first_step", "second_step"], max_tool_turns=2),
                         tools=tools)
    assert enough.status == "done" and enough.agents.set_index("agent").loc["a-1", "tool_calls"] == 2


def test_a_tool_loop_retried_after_a_refusal_is_billed_for_both_attempts(tmp_path: Path) -> None:
    # Seed 22 refuses the worker's second turn (429); the retry starts the loop again, so three answers
    # were billed for one worker. The error is injected by the fake's seeded dice, checked below.
    fake = FakeMessagesAPI(error_rate=0.4, seed=22, retry_after_ms=1)
    run = run_against(fake, tmp_path, worker_spec(["lookup_price"]), tools=[lookup_price])
    assert run.status == "done" and fake.responses[429] == 1
    worker_answers = fake.answers[:-1]  # the last is the coordinator's
    assert [a["stop_reason"] for a in worker_answers] == ["tool_use", "tool_use", "end_turn"]
    worker = run.agents.set_index("agent").loc["a-1"]
    assert worker.input_tokens == sum(a["usage"]["input_tokens"] for a in worker_answers)
    assert worker.output_tokens == sum(a["usage"]["output_tokens"] for a in worker_answers)
    assert worker.cost_usd == pytest.approx(cost_of(worker_answers))
    assert run.state.cost_usd == pytest.approx(cost_of(fake.answers))


def test_each_turn_of_a_tool_loop_is_priced_as_its_own_request(tmp_path: Path) -> None:
    # Haiku 5.5 charges more for a request over 100,000 prompt tokens. Two turns of ~56,000 are two
    # requests under the line: their sum being over it must not put the agent on the higher rates.
    spec = worker_spec(["lookup_price"], model="claude-haiku-5-5")
    spec["context"] = "Background to keep in mind. " * 8_000  # ~56,000 tokens in every request
    fake = FakeMessagesAPI()
    run = run_against(fake, tmp_path, spec, tools=[lookup_price])
    worker_answers = fake.answers[:2]
    prompts = [a["usage"]["input_tokens"] + (a["usage"].get("cache_creation_input_tokens") or 0)
               + (a["usage"].get("cache_read_input_tokens") or 0) for a in worker_answers]
    assert all(50_000 < p < 100_000 for p in prompts) and sum(prompts) > 100_000
    worker = run.agents.set_index("agent").loc["a-1"]
    assert worker.cost_usd == pytest.approx(cost_of(worker_answers))


@pytest.mark.parametrize("ending", ["stop", "timeout"])
def test_a_tool_loop_cut_off_keeps_what_its_turns_cost(tmp_path: Path, ending: str) -> None:
    waiting, fakes = threading.Event(), list[FakeMessagesAPI]()
    provider = om.OfflineProvider()

    async def never_returns(query: str) -> str:
        """Wait for something that never comes."""
        fakes.append(provider.server)  # the provider lets go of its fake when the run ends
        waiting.set()
        await asyncio.Event().wait()
        return "unreachable"

    spec = worker_spec(["never_returns"], model="claude-haiku-5-5")
    if ending == "timeout":
        spec.update(timeout=2, attempts=1)  # the first turn is answered in milliseconds; the tool never is
    run = om.start(spec, provider=provider, root=tmp_path, tools=[never_returns])
    assert waiting.wait(30)  # the first turn was answered, and billed; the loop now waits in the tool
    if ending == "stop":
        run.stop()
    run.wait()
    (first_turn,) = fakes[0].answers
    worker = run.agents.set_index("agent").loc["a-1"]
    assert worker.status == ("cancelled" if ending == "stop" else "failed")
    assert worker.input_tokens == first_turn["usage"]["input_tokens"] > 0
    assert worker.cost_usd == pytest.approx(cost_of([first_turn])) and run.state.cost_usd == worker.cost_usd


def test_a_tool_loop_tells_the_throttle_what_the_rate_limit_headers_said() -> None:
    from orchestra_magic.providers.anthropic.provider import AnthropicProvider
    from orchestra_magic.providers.base import AgentRequest
    from orchestra_magic.spec.model import DEFAULT_MODEL
    from orchestra_magic.tools.catalog import python_tool

    request = AgentRequest(agent="a-1", role="worker", domain="a", task="t", system="s", prompt="p",
                           model=DEFAULT_MODEL, max_tokens=200, tools=("lookup_price",),
                           tool_functions={"lookup_price": python_tool("lookup_price", lookup_price)})

    async def main() -> Any:
        fake = FakeMessagesAPI(rpm_limit=600)
        provider = AnthropicProvider(base_url=await fake.start())
        try:
            await provider.start()
            return await provider.complete(request), fake.answers
        finally:
            await provider.close()
            await fake.stop()

    completion, answers = asyncio.run(main())
    assert completion.tool_calls == 1 and len(answers) == 2
    assert completion.rate_limit is not None and completion.rate_limit.requests_per_minute == 600
    assert completion.rate_limit.remaining == 600 // 10 - 2  # the bucket holds a tenth of a minute; 2 taken


def cost_of(answers: list[dict[str, Any]]) -> float:
    """What the price table charges for these answers of the fake, as the API would bill them."""
    total = 0.0
    for answer in answers:
        usage = answer["usage"]
        cost = om_cost(answer["model"], usage["input_tokens"], usage["output_tokens"],
                       usage.get("cache_creation_input_tokens") or 0, usage.get("cache_read_input_tokens") or 0)
        assert cost is not None
        total += cost
    return total


def test_a_task_that_names_a_tool_gets_that_one_called(tmp_path: Path) -> None:
    called: list[str] = []

    def alpha(q: str) -> str:
        """A."""
        called.append("alpha")
        return "a"

    def beta(q: str) -> str:
        """B."""
        called.append("beta")
        return "b"

    spec = {"roles": {"worker": {"tools": ["alpha", "beta"], "max_tool_turns": 1}},
            "domains": [{"name": "a", "coordinator": "Sum up.", "workers": [{"task": "Use beta for this."}]}]}
    result = run_against(FakeMessagesAPI(), tmp_path, spec, tools=[alpha, beta])
    assert result.status == "done" and called == ["beta"]


# ---- thinking ----------------------------------------------------------------------------------------


def test_thinking_blocks_are_sent_back_verbatim_in_the_loop(tmp_path: Path) -> None:
    fake = FakeMessagesAPI()
    result = run_against(fake, tmp_path, worker_spec(["lookup_price"], thinking=2048), tools=[lookup_price])
    assert result.status == "done"
    first, second = worker_requests(fake)
    assert first["thinking"] == {"type": "enabled", "budget_tokens": 2048} and "stream" not in first
    thinking, call = second["messages"][1]["content"]
    answered = fake.answers[0]["content"][0]
    assert thinking == {"type": "thinking", "thinking": answered["thinking"], "signature": answered["signature"]}
    assert call["type"] == "tool_use"
    assert "Thinking it through" not in result.output("a-1")  # thinking never reaches the output file


def test_the_fake_streams_thinking_and_refuses_altered_or_missing_thinking() -> None:
    async def main() -> None:
        fake = FakeMessagesAPI()
        client = anthropic.AsyncAnthropic(api_key=KEY, base_url=await fake.start(), max_retries=0)
        tool = {"name": "lookup", "description": "d", "input_schema": {"type": "object", "properties": {}}}
        ask: list[Any] = [{"role": "user", "content": "Look it up."}]
        params: dict[str, Any] = {"model": "claude-fake-1", "max_tokens": 4096, "tools": [tool],
                                  "thinking": {"type": "adaptive"}}
        try:
            async with client.messages.stream(messages=ask, **params) as stream:
                deltas = [e.delta.type async for e in stream if e.type == "content_block_delta"]
                message = await stream.get_final_message()
            assert deltas[0] == "thinking_delta" and "signature_delta" in deltas and "input_json_delta" in deltas
            thinking, call = message.content
            assert thinking.type == "thinking" and thinking.signature == sign(thinking.thinking)
            assert call.type == "tool_use"
            result = [{"type": "tool_result", "tool_use_id": call.id, "content": "found"}]
            altered = {"type": "thinking", "thinking": thinking.thinking + " (edited)", "signature": thinking.signature}
            for content, problem in (([altered, call], "Invalid `signature`"), ([call], "must start with a thinking")):
                with pytest.raises(anthropic.BadRequestError, match=problem):
                    await client.messages.create(messages=[*ask, {"role": "assistant", "content": content},
                                                           {"role": "user", "content": result}], **params)
            with pytest.raises(anthropic.BadRequestError, match="without `tool_result` blocks"):
                await client.messages.create(messages=[*ask, {"role": "assistant", "content": message.content},
                                                       {"role": "user", "content": "go on"}], **params)
        finally:
            await client.close()
            await fake.stop()

    asyncio.run(main())


# ---- resolving names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "tools", "message"), [
    (worker_spec(["lookup_prices"]), [lookup_price],
     r"roles\.worker\.tools: unknown tool 'lookup_prices' for the workers\. Did you mean 'lookup_price'\?"
     r".*tools=\[lookup_prices\]"),
    ({**make_spec({"a": 1}), "tools": ["nowhere"]}, None, r"^tools: unknown tool 'nowhere' for the workers"),
    (worker_spec(["web search"]), None, r"'web search' \(for the workers\) is not a tool name"),
    (worker_spec(["web_search", "web_search_20250305"]), None, r"are the same tool for the workers"),
    (make_spec({"a": 1}), [lookup_price], r"you passed tools \(lookup_price\) but the spec names none"),
    (worker_spec(["read_file"]), {"read_file": lookup_price}, r"'read_file' is the name of a built-in tool"),
    (worker_spec(["x"]), [lambda q: q], r"has no usable name \('<lambda>'\)"),
    (worker_spec(["price"]), {"price": 42}, r"tools: 'price' is not a function"),
])
def test_bad_tools_are_refused_before_anything_runs(tmp_path: Path, spec: dict[str, Any], tools: Any,
                                                    message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        om.run(spec, provider="offline", root=tmp_path, tools=tools)
    assert list(tmp_path.iterdir()) == []


def test_a_function_that_cannot_be_described_is_a_config_error() -> None:
    from orchestra_magic.tools.catalog import python_tool

    def odd(x: Undefined) -> str:  # noqa: F821 (the point: a hint that cannot be resolved)
        return ""

    with pytest.raises(ConfigError, match=r"cannot offer .*odd' as the tool 'odd': name 'Undefined' is not defined"):
        python_tool("odd", odd)


def test_names_are_looked_up_in_the_variables_as_the_notebook_does(tmp_path: Path) -> None:
    spec = worker_spec(["lookup_price"])
    result = om.run(spec, provider="offline", root=tmp_path, variables={"lookup_price": lookup_price})
    assert result.status == "done" and "costs $42" in result.output("a-1")


def test_a_notebook_cell_finds_tools_in_the_namespace(shell: Any) -> None:
    cell(shell, "def vendor_count(region: str) -> int:\n    'How many vendors serve a region.'\n    return 7\n")
    source = ("%%orchestrate --provider offline -o run\nroles:\n  worker: {tools: [vendor_count]}\n"
              "domains:\n  - name: a\n    coordinator: Sum up.\n    workers: [{task: Count them.}]\n")
    cell(shell, source)
    assert "- vendor_count: 7" in shell.user_ns["run"].output("a-1")
    with pytest.raises(Exception, match="unknown tool 'missing_fn'"):
        cell(shell, source.replace("vendor_count", "missing_fn"))


def test_the_command_line_takes_tools_from_a_python_file(tmp_path: Path) -> None:

    (tmp_path / "mytools.py").write_text("def shout(text: str) -> str:\n    'Upper-case it.'\n"
                                         "    return text.upper()\n\ndef _hidden() -> None: ...\n")
    (tmp_path / "spec.yaml").write_text("tools: [shout]\ndomains:\n  - name: a\n    coordinator: Sum.\n"
                                        "    workers: [{task: Shout.}]\n")
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    command = ["run", "spec.yaml", "--provider", "offline"]
    done = orchestra(*command, "--tools", "mytools.py", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    (folder,) = (tmp_path / "orchestration").iterdir()
    assert "- shout: [SIMULATED] TEXT" in (folder / "workers" / "a-1.md").read_text()
    refused = orchestra(*command, cwd=tmp_path, env=env)
    assert refused.returncode == 2 and "unknown tool 'shout'" in refused.stderr


# ---- files -------------------------------------------------------------------------------------------


def test_python_tools_get_their_agents_workspace_inside_the_run_folder(tmp_path: Path) -> None:
    def save_note(note: str) -> str:
        """Keep a note."""
        path = om.workspace() / "note.txt"
        path.write_text(note)
        return str(path)

    result = run_against(FakeMessagesAPI(), tmp_path, make_spec({"a": 2}, tools=["save_note"]), tools=[save_note])
    assert result.status == "done"
    for relative in ("workspace/workers/a-1", "workspace/workers/a-2", "workspace/coordinators/a"):
        assert (result.path / relative / "note.txt").read_text() == "[simulated] note"
    with pytest.raises(RuntimeError, match="only inside a tool call"):
        om.workspace()


def test_the_built_in_file_tools_write_only_the_agents_own_workspace(tmp_path: Path) -> None:
    fake = FakeMessagesAPI()
    result = run_against(fake, tmp_path, worker_spec(["write_file", "read_file", "list_files"]))
    assert result.status == "done"
    last = worker_requests(fake)[-1]["messages"]  # the whole conversation: task, then 3 calls and results
    results = [b for m in last[2::2] for b in m["content"]]
    wrote, read, listed = (r["content"] for r in results)
    assert wrote == "wrote workspace/workers/a-1/[simulated] path (16 characters)"
    assert (result.path / "workspace/workers/a-1/[simulated] path").read_text() == "[simulated] text"
    # Read paths start at the run folder, not the workspace: the model is told so, and told again here.
    assert read == "Refused: [simulated] path is not a file of this run (see list_files)" and results[1]["is_error"]
    assert "workspace/workers/a-1/[simulated] path" in listed.splitlines() and "spec.yaml" in listed.splitlines()
    assert ".run.lock" not in listed and not results[0].get("is_error")


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Path]:
    """A run folder with bookkeeping and outputs, and a tool context for worker `w1` in it."""
    from orchestra_magic.providers.base import AgentRequest
    from orchestra_magic.tools.context import tool_context

    run = tmp_path / "run"
    for name, text in (("run.json", "{}"), ("spec.yaml", "x"), ("workers/w2.md", "theirs"), (".run.lock", "")):
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text(text)
    request = AgentRequest(agent="w1", role="worker", domain="d", task="", system="", prompt="", model="m",
                           max_tokens=1, run_folder=str(run))
    with tool_context(request):
        yield run


@pytest.mark.parametrize(("path", "problem"), [
    ("/etc/passwd", "is absolute"),
    ("C:\\notes.md", "is absolute"),
    ("~/notes.md", "is absolute"),
    ("../../run.json", "goes up with '..'"),
    ("sub\\..\\..\\run.json", "goes up with '..'"),
    (".hidden", "names a hidden file"),
    ("", "the path is empty"),
])
def test_file_tools_refuse_paths_that_are_not_plainly_inside(agent: Path, path: str, problem: str) -> None:
    from orchestra_magic.tools.files import Refused, read_file, write_file

    for call in (lambda: write_file(path, "x"), lambda: read_file(path)):
        with pytest.raises(Refused, match=problem):
            call()
    assert (agent / "run.json").read_text() == "{}"


def test_file_tools_refuse_links_that_lead_out(agent: Path, tmp_path: Path) -> None:
    from orchestra_magic.tools.files import Refused, read_file, write_file

    secret = tmp_path / "secret.txt"
    secret.write_text("outside")
    (agent / "peek").symlink_to(secret)
    with pytest.raises(Refused, match="leads outside"):
        read_file("peek")
    workspace = agent / "workspace/workers/w1"
    workspace.mkdir(parents=True)
    (workspace / "out").symlink_to(tmp_path)
    (workspace / "bookkeeping").symlink_to(agent / "run.json")
    for path in ("out/x.txt", "bookkeeping"):
        with pytest.raises(Refused, match="leads outside"):
            write_file(path, "overwritten")
    assert (agent / "run.json").read_text() == "{}" and not (tmp_path / "x.txt").exists()


def test_a_workspace_that_is_a_link_is_refused(agent: Path) -> None:
    from orchestra_magic.tools.files import Refused, write_file

    (agent / "workspace/workers").mkdir(parents=True)
    (agent / "workspace/workers/w1").symlink_to(agent / "workers")  # would land on other agents' outputs
    with pytest.raises(Refused, match="workspace folder is a link"):
        write_file("w2.md", "overwritten")
    assert (agent / "workers/w2.md").read_text() == "theirs"


def test_file_tools_read_the_run_and_write_the_workspace(agent: Path) -> None:
    from orchestra_magic.tools.files import list_files, read_file, write_file

    assert write_file("notes/today.md", "hello") == "wrote workspace/workers/w1/notes/today.md (5 characters)"
    assert read_file("workspace/workers/w1/notes/today.md") == "hello"
    assert read_file("workers/w2.md") == "theirs"  # reading other agents' outputs is allowed
    assert write_file("run.json", "{}!").startswith("wrote workspace/workers/w1/run.json")  # its own, not the run's
    assert (agent / "run.json").read_text() == "{}"
    assert list_files().splitlines() == ["run.json", "spec.yaml", "workers/w2.md",  # hidden files are not listed
                                         "workspace/workers/w1/notes/today.md", "workspace/workers/w1/run.json"]
    assert not list((agent / "workspace/workers/w1").glob(".*"))  # atomic writes leave no temporary file
