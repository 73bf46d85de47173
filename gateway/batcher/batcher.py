"""Micro-batching (seed section 5): small similar requests wait a few milliseconds and share one call.

Requests are grouped by what must be identical for one context to serve them all: the model after
routing, the shared messages before the task, the sampling parameters and the cache scope. A group is
sent when it is full or when its oldest request has waited ``window_ms``. Each caller then gets an
ordinary ``chat.completion`` with its own answer and its share of the usage; whatever the batch reply
does not answer unambiguously is sent again one by one, so a batch never fails or mixes up its callers.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway import metrics
from gateway.batcher.eligibility import BatchFacts, admits, shared_context
from gateway.batcher.prompt import build_batch_message, parse_answers, task_id
from gateway.batcher.split import apportion, member_answer
from gateway.cache.keys import cache_key
from gateway.context import BatchResult, Call, Request, Usage
from gateway.errors import GatewayError
from gateway.logs import get_logger
from gateway.policy.batching import BatchingConfig
from gateway.providers import UpstreamReply
from gateway.tokens import estimate_text
from gateway.upstream import ModelCatalog, Target, Upstream

log = get_logger("gateway.batcher")
Served = tuple[Target, UpstreamReply, BatchResult]
"""The model that answered, its reply, and how the batcher served the request."""


@dataclass(slots=True)
class Member:
    request: Request
    target: Target
    call: Call
    task: str
    future: asyncio.Future[Served]
    joined: float = field(default_factory=time.perf_counter)
    wait_s: float = 0.0


@dataclass(slots=True)
class Batch:
    """One upstream call: its members and the task id each got in the prompt."""

    id: str
    members: list[Member]
    ids: dict[int, str]
    body: dict[str, Any]

    def task_of(self, member: Member) -> str:
        return self.ids[id(member)]


@dataclass(slots=True)
class Group:
    members: list[Member] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class Batcher:
    def __init__(
        self,
        config: BatchingConfig,
        upstream: Upstream,
        catalog: ModelCatalog,
        scope_of: Callable[[Request], str],
    ) -> None:
        self.config = config
        self.upstream = upstream
        self.catalog = catalog
        self.scope_of = scope_of
        self._groups: dict[str, Group] = {}
        self._flushing: set[asyncio.Task[None]] = set()

    def eligible(self, request: Request) -> bool:
        """Cheap and synchronous, so a request that is not batchable never waits."""
        return (
            self.config.enabled
            and request.batchable is not False
            and admits(self.config, BatchFacts.of(request))
        )

    async def submit(self, request: Request, target: Target, call: Call) -> Served:
        """Join (or open) this request's group and wait for its own answer."""
        key = cache_key("batch", target.name, shared_context(request.body), self.scope_of(request))
        loop = asyncio.get_running_loop()
        member = Member(request, target, call, request.body["messages"][-1]["content"], loop.create_future())
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = Group()
            group.timer = loop.call_later(self.config.window_ms / 1000, self._send, key)
        group.members.append(member)
        if len(group.members) >= self.config.max_batch:
            self._send(key)
        return await asyncio.shield(member.future)

    def _send(self, key: str) -> None:
        group = self._groups.pop(key, None)
        if group is None:
            return
        if group.timer is not None:
            group.timer.cancel()
        now = time.perf_counter()
        for member in group.members:
            member.wait_s = now - member.joined
        task = asyncio.get_running_loop().create_task(self._flush(group.members))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def close(self) -> None:
        """Send what is waiting and let in-flight batches finish (called at shutdown)."""
        for key in list(self._groups):
            self._send(key)
        if self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)

    async def _flush(self, members: list[Member]) -> None:
        if len(members) == 1:
            await self._one_by_one(members)
            return
        order = list(members)
        if self.config.shuffle:
            random.shuffle(order)
        ids = {id(m): task_id(i) for i, m in enumerate(order)}
        batch = Batch(os.urandom(6).hex(), members, ids, self._batch_body(order, ids))
        first = members[0]
        path = first.request.protocol.upstream_path
        call = Call(f"batch-{batch.id}", False, path, batch.body, orjson.dumps(batch.body))
        answers: dict[str, str] = {}
        target, reply = first.target, None
        try:
            target, reply = await self.upstream.call(call, self.catalog.chain(first.target))
            if reply.status == 200:
                answers = parse_answers(_content(reply.body), list(ids.values()))
        except GatewayError as exc:
            log.warning("batch_failed", batch_id=batch.id, size=len(members), error=exc.message)
        answered = [m for m in members if batch.task_of(m) in answers]
        missing = [m for m in members if batch.task_of(m) not in answers]
        metrics.BATCHES.inc()
        metrics.BATCH_SIZE.observe(len(members))
        if answered and reply is not None:
            self._deliver(batch, target, reply, answered, answers)
        if missing:
            metrics.BATCH_FALLBACKS.inc(len(missing))
            log.info("batch_fallback", batch_id=batch.id, size=len(members), missing=len(missing))
            await self._one_by_one(missing)

    def _batch_body(self, order: list[Member], ids: dict[int, str]) -> dict[str, Any]:
        first = order[0].request.body
        body = {k: v for k, v in first.items() if k not in ("stream", "stream_options", "user", "metadata")}
        tasks = [(ids[id(m)], m.task) for m in order]
        body["messages"] = [*first["messages"][:-1], build_batch_message(tasks)]
        body["model"] = order[0].target.upstream_model
        for name in ("max_completion_tokens", "max_tokens"):
            limits = [m.request.body.get(name) for m in order]
            if all(isinstance(x, int) for x in limits):
                body[name] = sum(limits)
        if self.config.json_mode:
            body["response_format"] = {"type": "json_object"}
        return body

    def _deliver(
        self,
        batch: Batch,
        target: Target,
        reply: UpstreamReply,
        answered: list[Member],
        answers: dict[str, str],
    ) -> None:
        """Give each caller its own completion and its share of the usage (shares sum to the whole)."""
        whole = orjson.loads(reply.body)
        protocol = answered[0].request.protocol
        usage = protocol.usage(whole) or Usage()
        texts = [answers[batch.task_of(m)] for m in answered]
        own = [estimate_text(m.task) for m in answered]
        shared = max(0, usage.prompt_tokens - sum(own))
        prompts = apportion(usage.prompt_tokens, [shared / len(answered) + o for o in own])
        completions = apportion(usage.completion_tokens, [estimate_text(t) for t in texts])
        # What the same tasks would have cost one by one, from the estimates, calibrated by this batch.
        scale = usage.prompt_tokens / max(1, protocol.estimate(batch.body))
        alone = sum(m.request.prompt_estimate * scale for m in answered) + usage.completion_tokens
        metrics.BATCH_TOKENS.inc(usage.total)
        metrics.BATCH_TOKENS_UNBATCHED.inc(alone)
        for member, text, prompt, completion in zip(answered, texts, prompts, completions, strict=True):
            saved = round(member.request.prompt_estimate * scale) - prompt
            result = BatchResult(batch.id, len(batch.members), member.wait_s, saved)
            data = member_answer(
                whole, f"{batch.id}-{batch.task_of(member)}", text, Usage(prompt, completion)
            )
            if not member.future.done():
                reply = UpstreamReply(200, {"content-type": "application/json"}, data)
                member.future.set_result((target, reply, result))

    async def _one_by_one(self, members: list[Member]) -> None:
        async def alone(member: Member) -> None:
            try:
                target, reply = await self.upstream.call(member.call, self.catalog.chain(member.target))
            except GatewayError as exc:
                if not member.future.done():
                    member.future.set_exception(exc)
                return
            if not member.future.done():
                member.future.set_result((target, reply, BatchResult(wait_s=member.wait_s)))

        await asyncio.gather(*(alone(m) for m in members))


def _content(body: bytes) -> str | None:
    try:
        return orjson.loads(body)["choices"][0]["message"]["content"]  # type: ignore[no-any-return]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return None
