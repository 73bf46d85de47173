"""A streamed batch hands each member its answer as soon as it is complete, and charges every token."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import orjson

from gateway.batcher import Batcher
from gateway.context import Call, Request
from gateway.policy.batching import BatchingConfig
from gateway.protocols import CHAT
from gateway.providers import UpstreamReply

SYSTEM = {"role": "system", "content": "shared context " * 50}


def chunk(content: str | None = None, usage: dict[str, int] | None = None) -> bytes:
    event: dict[str, Any] = {"id": "c1", "model": "m", "created": 1, "choices": []}
    if content is not None:
        event["choices"] = [{"index": 0, "delta": {"content": content}}]
    if usage is not None:
        event["usage"] = usage
    return b"data: " + orjson.dumps(event) + b"\n\n"


class ScriptedUpstream:
    """Streams a batch reply in two halves; the second only once ``go_on`` is set."""

    def __init__(self, first: str, rest: str, usage: dict[str, int]) -> None:
        self.first, self.rest, self.usage = first, rest, usage
        self.go_on = asyncio.Event()
        self.calls: list[Call] = []

    async def call(self, call: Call, chain: Any) -> Any:
        self.calls.append(call)

        async def chunks() -> AsyncIterator[bytes]:
            yield chunk(self.first)
            await self.go_on.wait()
            yield chunk(self.rest)
            yield chunk(usage=self.usage)
            yield b"data: [DONE]\n\n"

        return FakeTarget(), UpstreamReply(200, {}, chunks=chunks())


class Catalog:
    def chain(self, target: Any) -> list[Any]:
        return [target]


def member(task: str, max_tokens: int) -> Request:
    body = {"model": "m", "max_tokens": max_tokens, "messages": [SYSTEM, {"role": "user", "content": task}]}
    return Request(task, CHAT, "a", "t", task_type="test", body=body, prompt_estimate=120)


def submit(batcher: Batcher, request: Request) -> Any:
    """The batcher's answer to one member: (target, reply, batch result)."""
    body = {**request.body, "prompt_cache_key": "llmgw-k"}  # what the pipeline sends alone
    call = Call(request.request_id, False, CHAT.upstream_path, body, orjson.dumps(body))
    return batcher.submit(request, FakeTarget(), call)  # type: ignore[arg-type]


class FakeTarget:
    name = "m"
    upstream_model = "m"


def test_first_answer_leaves_before_the_reply_ends_and_shares_sum_to_the_usage() -> None:
    async def scenario() -> None:
        usage = {"prompt_tokens": 300, "completion_tokens": 40, "total_tokens": 340}
        reply = json.dumps({"t1": "short", "t2": "a much longer answer than the first one"})
        cut = reply.index(', "t2"')
        upstream = ScriptedUpstream(reply[:cut], reply[cut:], usage)
        config = BatchingConfig(window_ms=50, max_added_ms=60000)
        batcher = Batcher(config, upstream, Catalog(), lambda ctx: "scope")  # type: ignore[arg-type]
        long_one = asyncio.ensure_future(submit(batcher, member("long task", 30)))
        short_one = asyncio.ensure_future(submit(batcher, member("short task", 5)))
        await asyncio.wait([short_one, long_one], return_when=asyncio.FIRST_COMPLETED)
        assert short_one.done()
        call = upstream.calls[0]
        assert call.stream is True, "the provider is asked for a stream, not just the body"
        sent = call.body
        assert sent["stream"] is True and "### Task t1\nshort task" in sent["messages"][-1]["content"], (
            "streamed, shortest expected answer first"
        )
        assert sent["prompt_cache_key"] == "llmgw-k", "the batch keeps its members' prompt-cache key"
        assert not long_one.done(), "the short answer left while the reply was still streaming"
        upstream.go_on.set()
        await long_one
        answers = [orjson.loads(f.result()[1].body) for f in (short_one, long_one)]
        assert {f.result()[2].batch_id for f in (short_one, long_one)} == {call.request_id[len("batch-") :]}
        assert [a["choices"][0]["message"]["content"] for a in answers] == [
            "short",
            "a much longer answer than the first one",
        ]
        assert sum(a["usage"]["prompt_tokens"] for a in answers) == 300
        assert sum(a["usage"]["completion_tokens"] for a in answers) == 40
        await batcher.close()

    asyncio.run(scenario())


def test_a_batch_that_breaks_still_answers_every_caller() -> None:
    class Broken:
        async def call(self, *args: Any) -> Any:
            raise RuntimeError("unexpected")

    async def scenario() -> list[Any]:
        batcher = Batcher(
            BatchingConfig(window_ms=20, max_added_ms=60000), Broken(), Catalog(), lambda c: "s"
        )  # type: ignore[arg-type]
        calls = [submit(batcher, member(f"t{i}", 5)) for i in range(2)]
        return list(await asyncio.gather(*calls, return_exceptions=True))

    results = asyncio.run(scenario())
    assert all(getattr(r, "status", None) == 502 for r in results)


class BotchedThenAlone:
    """The batch reply answers nobody; each task sent alone then gets a plain answer."""

    def __init__(self) -> None:
        self.calls = 0

    async def call(self, call: Call, chain: Any) -> Any:
        self.calls += 1
        if call.stream:

            async def chunks() -> AsyncIterator[bytes]:
                yield chunk("I cannot answer in JSON, sorry.")
                yield chunk(usage={"prompt_tokens": 200, "completion_tokens": 10, "total_tokens": 210})
                yield b"data: [DONE]\n\n"

            return FakeTarget(), UpstreamReply(200, {}, chunks=chunks())
        answer = {
            "id": "x",
            "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "alone"}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 5, "total_tokens": 105},
        }
        return FakeTarget(), UpstreamReply(200, {}, orjson.dumps(answer))


def test_a_botched_batch_is_charged_to_the_tasks_sent_again() -> None:
    async def scenario() -> list[dict[str, Any]]:
        upstream = BotchedThenAlone()
        config = BatchingConfig(window_ms=50, max_added_ms=60000)
        batcher = Batcher(config, upstream, Catalog(), lambda ctx: "scope")  # type: ignore[arg-type]
        results = await asyncio.gather(*(submit(batcher, member(f"task {i}", 5)) for i in range(2)))
        await batcher.close()
        assert upstream.calls == 3
        assert all(result.fallback and result.batch_id for _, _, result in results), "counted with the batch"
        return [orjson.loads(reply.body) for _, reply, _ in results]

    answers = asyncio.run(scenario())
    assert [a["choices"][0]["message"]["content"] for a in answers] == ["alone", "alone"]
    assert sum(a["usage"]["total_tokens"] for a in answers) == 210 + 2 * 105, "the botched call is charged"
