"""The fake upstream must look like the real OpenAI API to the official SDK, or gateway tests prove little."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import openai
import pytest
from aiohttp import web

from tests.fakes.background import BackgroundServer
from tests.fakes.upstream import FakeUpstream, count_tokens, fake_embedding, prompt_tokens

KEY = "sk-test-0123456789abcdef"
USER = [{"role": "user", "content": "hello brave new world"}]
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[FakeUpstream, BackgroundServer]]:
    fake = FakeUpstream(expected_key=KEY)
    with BackgroundServer(fake.app) as srv:
        yield fake, srv


@pytest.fixture
def fake(server: tuple[FakeUpstream, BackgroundServer]) -> Iterator[FakeUpstream]:
    server[0].reset()
    yield server[0]
    server[0].reset()


@pytest.fixture
def url(server: tuple[FakeUpstream, BackgroundServer], fake: FakeUpstream) -> str:
    return server[1].url + "/v1"


@pytest.fixture
def client(url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=url, api_key=KEY, max_retries=0) as sdk:
        yield sdk


def test_chat_completion_is_deterministic_and_billed(client: openai.OpenAI, fake: FakeUpstream) -> None:
    messages = [{"role": "system", "content": "be brief"}, *USER]
    out = client.chat.completions.create(model="gpt-4o-mini", messages=messages, extra_body={"x_unknown": 1})
    assert out.id.startswith("chatcmpl-") and out.object == "chat.completion" and out.model == "gpt-4o-mini"
    assert out.system_fingerprint and out.created > 0
    choice = out.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == "echo: hello brave new world"
    assert choice.finish_reason == "stop"
    assert out.usage is not None
    assert (
        out.usage.prompt_tokens
        == prompt_tokens(messages)
        == count_tokens("be brief") + count_tokens("hello brave new world") + 8
    )
    assert out.usage.completion_tokens == count_tokens("echo: hello brave new world")
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens
    assert (
        fake.answer("/chat/completions", {"model": "m", "messages": messages})["choices"][0]["message"][
            "content"
        ]
        == choice.message.content
    )


def test_chat_n_max_tokens_and_content_parts(client: openai.OpenAI) -> None:
    content = [{"type": "text", "text": "part one "}, {"type": "text", "text": "two"}]
    parts = [{"role": "user", "content": content}]
    out = client.chat.completions.create(model="m", messages=parts, n=3)
    assert [c.index for c in out.choices] == [0, 1, 2]
    assert {c.message.content for c in out.choices} == {"echo: part one two"}
    assert out.usage is not None and out.usage.completion_tokens == 3 * count_tokens("echo: part one two")
    cut = client.chat.completions.create(model="m", messages=USER, max_completion_tokens=2)
    assert cut.choices[0].finish_reason == "length" and cut.choices[0].message.content == "echo: he"
    assert cut.usage is not None and cut.usage.completion_tokens == 2


def test_chat_stream_reassembles(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="m", messages=USER, stream=True))
    assert len(chunks) >= 5 and len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].object == "chat.completion.chunk"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "echo: hello brave new world"
    assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].usage is None
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])

    with_usage = list(
        client.chat.completions.create(
            model="m", messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )
    last = with_usage[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.prompt_tokens == prompt_tokens(USER)
    assert last.usage.completion_tokens == count_tokens("echo: hello brave new world")
    assert with_usage[-2].choices[0].finish_reason == "stop"


def test_tool_calls_plain_and_streamed(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(model="m", messages=USER, tools=TOOLS)  # type: ignore[arg-type]
    choice = out.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.id.startswith("call_") and call.function.name == "lookup"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"echo": "hello brave new world"}  # type: ignore[union-attr]

    chunks = list(client.chat.completions.create(model="m", messages=USER, tools=TOOLS, stream=True))  # type: ignore[arg-type]
    first = chunks[0].choices[0].delta
    assert first.role == "assistant" and first.tool_calls and first.tool_calls[0].function
    assert first.tool_calls[0].id and first.tool_calls[0].function.name == "lookup"
    pieces = [
        c.choices[0].delta.tool_calls[0].function.arguments  # type: ignore[index,union-attr]
        for c in chunks[1:]
        if c.choices[0].delta.tool_calls
    ]
    assert len(pieces) > 1 and json.loads("".join(pieces)) == {"echo": "hello brave new world"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_legacy_completions(client: openai.OpenAI) -> None:
    out = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="say hi")
    assert out.object == "text_completion" and out.choices[0].text == "echo: say hi"
    assert out.usage is not None and out.usage.prompt_tokens == count_tokens("say hi")
    streamed = list(
        client.completions.create(
            model="m", prompt="say hi there", stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == "echo: say hi there"
    assert streamed[-1].choices == [] and streamed[-1].usage is not None


def test_embeddings_float_and_sdk_default_base64(client: openai.OpenAI, fake: FakeUpstream) -> None:
    default = client.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"])
    assert fake.last is not None and fake.last.json["encoding_format"] == "base64"  # the SDK's default
    assert [d.index for d in default.data] == [0, 1]
    assert default.data[0].embedding == fake_embedding("alpha") and len(default.data[1].embedding) == 8
    floats = client.embeddings.create(model="e", input="alpha", encoding_format="float", dimensions=16)
    assert floats.data[0].embedding == fake_embedding("alpha", 16)
    assert abs(sum(x * x for x in floats.data[0].embedding) - 1) < 1e-5
    assert floats.usage.prompt_tokens == count_tokens("alpha") and floats.object == "list"
    tokens = client.embeddings.create(model="e", input=[[1, 2, 3], [4]], encoding_format="float")
    assert len(tokens.data) == 2 and tokens.usage.prompt_tokens == 4
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="e", input="")


def test_models_and_responses(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert "gpt-4o-mini" in ids and client.models.retrieve("gpt-4o").id == "gpt-4o"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")
    out = client.responses.create(model="gpt-4o-mini", input="hi")
    assert out.object == "response" and out.output_text == "echo: hi" and out.status == "completed"
    assert out.usage is not None and out.usage.output_tokens == count_tokens("echo: hi")
    listed = client.responses.create(model="m", input=[{"role": "user", "content": "from a list"}])
    assert listed.output_text == "echo: from a list"


def test_files_and_batches_through_the_sdk(client: openai.OpenAI) -> None:
    line = {
        "custom_id": "r1",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "m", "messages": USER},
    }
    payload = (json.dumps(line) + "\n").encode()
    uploaded = client.files.create(file=("in.jsonl", payload), purpose="batch")
    assert uploaded.id.startswith("file-") and uploaded.bytes == len(payload)
    assert uploaded.filename == "in.jsonl"
    assert client.files.retrieve(uploaded.id).purpose == "batch"
    assert client.files.content(uploaded.id).content == payload
    assert [f.id for f in client.files.list()] == [uploaded.id]

    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert batch.status == "validating" and batch.object == "batch"
    for _ in range(5):
        batch = client.batches.retrieve(batch.id)
        if batch.status == "completed":
            break
    assert batch.status == "completed" and batch.request_counts and batch.request_counts.completed == 1
    assert batch.output_file_id is not None
    result = json.loads(client.files.content(batch.output_file_id).content)
    assert result["custom_id"] == "r1" and result["response"]["status_code"] == 200
    assert result["response"]["body"]["choices"][0]["message"]["content"] == "echo: hello brave new world"
    assert [b.id for b in client.batches.list()] == [batch.id]


def test_authentication(url: str, fake: FakeUpstream) -> None:
    with (
        openai.OpenAI(base_url=url, api_key="sk-wrong-key-zzzz", max_retries=0) as bad,
        pytest.raises(openai.AuthenticationError) as info,
    ):
        bad.models.list()
    error = info.value.body
    assert isinstance(error, dict) and error["code"] == "invalid_api_key"
    assert "sk-**********zzzz" in error["message"] and "wrong" not in error["message"]  # masked like OpenAI
    assert fake.count("/models") == 1  # rejected requests are recorded too


def test_rate_limit_with_retry_after_then_sdk_retries(client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.fail_next(status=429, retry_after=2)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="m", messages=USER)
    assert info.value.response.headers["retry-after"] == "2"
    assert isinstance(info.value.body, dict) and info.value.body["type"] == "rate_limit_error"

    fake.fail_next(times=2, status=429, retry_after=0.01)
    out = client.with_options(max_retries=2).chat.completions.create(model="m", messages=USER)
    assert out.choices[0].message.content == "echo: hello brave new world"
    assert fake.count("/v1/chat/completions") == 4


def test_server_errors_are_scoped_by_path(client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.fail_next(status=500, path="/chat/completions")
    client.models.list()  # another path does not consume the fault
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="m", messages=USER)
    assert isinstance(info.value.body, dict) and info.value.body["type"] == "server_error"
    fake.fail_next(status=503, body={"error": {"message": "custom", "type": "server_error"}})
    with pytest.raises(openai.InternalServerError, match="custom"):
        client.models.list()
    client.chat.completions.create(model="m", messages=USER)


def test_broken_stream_raises_mid_iteration(client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.break_stream_next(after_chunks=2)
    client.chat.completions.create(model="m", messages=USER)  # non-streaming requests are not affected
    received = []
    with pytest.raises((openai.APIError, httpx2.HTTPError)):
        for chunk in client.chat.completions.create(model="m", messages=USER, stream=True):
            received.append(chunk)
    assert len(received) == 2
    assert len(list(client.chat.completions.create(model="m", messages=USER, stream=True))) > 2


def test_dropped_connection_and_hang(client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.drop_connection_next()
    with pytest.raises(openai.APIConnectionError):
        client.models.list()
    fake.hang_next(seconds=30)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.3).models.list()
    assert time.monotonic() - started < 5
    assert client.models.list().data


def test_latency_and_fail_model(client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.latency_s = 0.2
    started = time.monotonic()
    client.chat.completions.create(model="m", messages=USER)
    assert time.monotonic() - started >= 0.2
    fake.latency_s = 0.0
    fake.fail_model("primary", status=503)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="primary", messages=USER)
    assert client.chat.completions.create(model="backup", messages=USER).model == "backup"
    fake.clear()
    assert client.chat.completions.create(model="primary", messages=USER).model == "primary"


def test_request_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="m", messages=[])
    assert isinstance(info.value.body, dict) and info.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError, match="model"):
        client.post("/chat/completions", body={"messages": USER}, cast_to=object)
    with pytest.raises(openai.NotFoundError, match="Invalid URL"):
        client.get("/no/such/path", cast_to=object)
    with pytest.raises(openai.APIStatusError) as wrong_method:
        client.get("/chat/completions", cast_to=object)
    assert wrong_method.value.status_code == 405


def test_records_requests_and_responder(client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.responder = lambda body: f"{len(body['messages'])} message(s)"
    out = client.chat.completions.create(model="m", messages=USER, temperature=0)
    assert out.choices[0].message.content == "1 message(s)"
    recorded = fake.requests[-1]
    assert recorded.method == "POST" and recorded.path == "/v1/chat/completions"
    assert recorded.headers["authorization"] == f"Bearer {KEY}"
    assert recorded.json == {"model": "m", "messages": USER, "temperature": 0}
    assert json.loads(recorded.body) == recorded.json
    assert fake.count("/chat/completions") == fake.count() == 1
    fake.reset()
    assert fake.requests == [] and fake.count() == 0 and fake.responder is None


async def test_async_client_sees_chunks_as_they_are_written(url: str, fake: FakeUpstream) -> None:
    """The first chunk arrives while the rest is still being written: with a long pause between chunks,
    the first one is read long before the stream could have ended (a buffered stream would not be)."""
    fake.chunk_delay_s = 5.0  # the whole stream takes 30 s
    async with openai.AsyncOpenAI(base_url=url, api_key=KEY, max_retries=0) as sdk:
        stream = await sdk.chat.completions.create(model="m", messages=USER, stream=True)  # type: ignore[arg-type]
        first = await asyncio.wait_for(anext(aiter(stream)), timeout=15)
        await stream.close()
    assert first.choices[0].delta.role == "assistant"


def test_background_server_run_factory_and_stop() -> None:
    async def make() -> web.Application:
        app = web.Application()

        async def ping(request: web.Request) -> web.Response:
            return web.Response(text="pong")

        app.router.add_get("/ping", ping)
        return app

    async def loop_id() -> int:
        import asyncio

        return id(asyncio.get_running_loop())

    srv = BackgroundServer(make).start()
    try:
        assert httpx2.get(srv.url + "/ping").text == "pong"
        assert srv.run(loop_id()) == id(srv.loop)
    finally:
        srv.stop()
    with pytest.raises(httpx2.ConnectError):
        httpx2.get(srv.url + "/ping")


def test_cli_serves_until_sigterm() -> None:
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "tests.fakes.upstream", "--port", "0", "--latency-ms", "0"]
    with subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            assert line.startswith("ready http://127.0.0.1:")
            base = line.split()[1]
            with openai.OpenAI(base_url=base + "/v1", api_key="anything", max_retries=0) as sdk:
                assert sdk.chat.completions.create(model="m", messages=USER).choices[0].message.content
            assert httpx2.get(base + "/_fake/stats").json()["requests"] == 1
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
