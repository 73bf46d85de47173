"""Micro-batching (seed section 5): small similar requests wait a few milliseconds and share one call.

Requests are grouped by what must be identical for one context to serve them all: the model after
routing, the shared messages before the task, the sampling parameters and the cache scope. A request
waits only when a partner is likely and only as long as partners lately took to come, and a group never
takes a member whose answer would cost the others more than ``max_added_ms`` (see ``formation``); it
is sent when full, when no partner came in time, or at ``window_ms``. Each caller then gets an
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
from gateway.batcher.formation import Formation
from gateway.batcher.latency import DecodeModel, OutputHistory, added_s
from gateway.batcher.prompt import build_batch_message, parse_answers, task_id
from gateway.batcher.split import apportion, member_answer
from gateway.batcher.stream_split import StreamSplitter
from gateway.batcher.streamed import read_stream
from gateway.cache.keys import cache_key
from gateway.context import BatchResult, Call, Request, Usage
from gateway.errors import GatewayError, UpstreamError
from gateway.logs import get_logger
from gateway.policy.batching import BatchingConfig
from gateway.providers import UpstreamReply
from gateway.tokens import estimate_text
from gateway.upstream import ModelCatalog, Target, Upstream

log = get_logger("gateway.batcher")
_UNDER = 0.9
"""Early answers are charged this share of their estimate; the last answer takes the exact rest."""
Served = tuple[Target, UpstreamReply, BatchResult]
"""The model that answered, its reply, and how the batcher served the request."""


@dataclass(slots=True)
class Member:
    request: Request
    target: Target
    call: Call
    task: str
    future: asyncio.Future[Served]
    output: int = 0
    """Predicted completion tokens."""
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
        self.formation = Formation(config)
        self.history = OutputHistory(config.output_tokens_prior)
        self.decode = DecodeModel(config.decode_ms_per_token / 1000)
        self._prompt_scale = 1.0
        """Provider prompt tokens per estimated token, from the last batch."""

    def eligible(self, request: Request) -> bool:
        """Cheap and synchronous, so a request that is not batchable never waits."""
        return (
            self.config.enabled
            and request.batchable is not False
            and admits(self.config, BatchFacts.of(request))
        )

    async def submit(self, request: Request, target: Target, call: Call) -> Served:
        """Join (or open) this request's group, or go at once, and wait for its own answer."""
        body = request.body
        key = cache_key("batch", target.name, shared_context(body), self.scope_of(request))
        loop = asyncio.get_running_loop()
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        output = self.history.predict(request.task_type, target.name, limit)
        member = Member(request, target, call, body["messages"][-1]["content"], loop.create_future(), output)
        self.formation.arrive(key, member.joined)
        group = self._groups.get(key)
        if group is not None and not self._fits(group, member):
            self._send(key)
            group = None
        elif group is None and not self.formation.open(key, member.joined):
            self._start([member])  # no partner is likely: waiting would only add latency
            return await asyncio.shield(member.future)
        if group is None:
            group = self._groups[key] = Group()
        group.members.append(member)
        if len(group.members) >= self.config.max_batch:
            self._send(key)
        else:
            if group.timer is not None:
                group.timer.cancel()
            group.timer = loop.call_at(self._deadline(key, group), self._send, key)
        return await asyncio.shield(member.future)

    def _decode_waits(self, members: list[Member]) -> list[float]:
        return added_s([m.output for m in members], self.decode.per_token_s(members[0].target.name))

    def _fits(self, group: Group, member: Member) -> bool:
        members = [*group.members, member]
        waited = [member.joined - m.joined for m in members]
        return self.formation.fits(waited, self._decode_waits(members))

    def _deadline(self, key: str, group: Group) -> float:
        """Loop time to send the group: no later than the window, the next partner's expected gap, or
        the moment a member's wait plus decode would pass ``max_added_ms``."""
        members = group.members
        now = time.perf_counter()
        bound = self.config.max_added_ms / 1000
        by_bound = min(
            m.joined + bound - d for m, d in zip(members, self._decode_waits(members), strict=True)
        )
        send_at = min(
            members[0].joined + self.config.window_ms / 1000, now + self.formation.wait_s(key), by_bound
        )
        return asyncio.get_running_loop().time() + max(0.0, send_at - now)

    def _send(self, key: str) -> None:
        group = self._groups.pop(key, None)
        if group is None:
            return
        if group.timer is not None:
            group.timer.cancel()
        now = time.perf_counter()
        for member in group.members:
            member.wait_s = now - member.joined
        self._start(group.members)

    def _start(self, members: list[Member]) -> None:
        task = asyncio.get_running_loop().create_task(self._flush(members))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)
        task.add_done_callback(lambda done: _fail_pending(done, members))

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
        ids = {id(m): task_id(i) for i, m in enumerate(self._order(members))}
        batch = Batch(os.urandom(6).hex(), members, ids, self._batch_body(self._order(members), ids))
        by_task = {batch.task_of(m): m for m in members}
        first = members[0]
        protocol = first.request.protocol
        path, stream = protocol.upstream_path, self.config.stream
        call = Call(f"batch-{batch.id}", stream, path, batch.body, orjson.dumps(batch.body))
        splitter = StreamSplitter(list(ids.values()))
        handed: dict[str, Usage] = {}
        answers: dict[str, str] = {}
        target, usage, head = first.target, None, {}
        started = time.perf_counter()

        def early(task: str, text: str, head: dict[str, Any]) -> None:
            if len(splitter.given) >= len(members):
                return  # the last answer waits for the usage, so the shares add up to it exactly
            share = self._estimated_share(batch, by_task[task], text)
            handed[task] = share
            self._hand_out(batch, target, head, by_task[task], text, share)

        try:
            target, reply = await self.upstream.call(call, self.catalog.chain(first.target))
            content = None
            if reply.status == 200 and reply.chunks is not None:
                streamed = await read_stream(reply, protocol, splitter, early)
                usage, head = streamed.usage, streamed.head
                content = streamed.content if streamed.complete else None
            elif reply.chunks is not None:
                await reply.close()
            elif reply.status == 200:
                head = _head(reply.body)
                usage, content = protocol.usage(head), _content(head)
            answers = parse_answers(content, list(ids.values()))
        except GatewayError as exc:
            log.warning("batch_failed", batch_id=batch.id, size=len(members), error=exc.message)
        elapsed = time.perf_counter() - started
        if splitter.repeated:
            log.warning("batch_repeated_ids", batch_id=batch.id, ids=sorted(splitter.repeated))
        left = Usage()
        if usage is not None:
            self.decode.record(target.name, usage.completion_tokens, elapsed)
            self._prompt_scale = usage.prompt_tokens / max(1, protocol.estimate(batch.body))
            left = Usage(
                max(0, usage.prompt_tokens - sum(u.prompt_tokens for u in handed.values())),
                max(0, usage.completion_tokens - sum(u.completion_tokens for u in handed.values())),
                usage.cached_input_tokens,  # early answers are handed out before it is known
            )
            metrics.BATCH_TOKENS.inc(usage.total)
        late = [m for m in members if batch.task_of(m) in answers and batch.task_of(m) not in handed]
        missing = [m for m in members if batch.task_of(m) not in answers and batch.task_of(m) not in handed]
        metrics.BATCHES.inc()
        metrics.BATCH_SIZE.observe(len(members))
        answered = [by_task[t] for t in handed] + late
        alone = sum(m.request.prompt_estimate for m in answered) * self._prompt_scale
        metrics.BATCH_TOKENS_UNBATCHED.inc(alone + (usage.completion_tokens if usage else 0))
        if late:
            self._deliver(batch, target, head, late, answers, left)
        if missing:
            metrics.BATCH_FALLBACKS.inc(len(missing))
            log.info("batch_fallback", batch_id=batch.id, size=len(members), missing=len(missing))
            # A reply that answered nobody was still billed: its tokens go with the tasks sent again.
            await self._one_by_one(missing, batch, left if not late else Usage())

    def _order(self, members: list[Member]) -> list[Member]:
        """Shortest expected answers first when streamed (they leave first), else shuffled."""
        if self.config.stream:
            return sorted(members, key=lambda m: m.output)
        order = list(members)
        if self.config.shuffle:
            random.shuffle(order)
        return order

    def _batch_body(self, order: list[Member], ids: dict[int, str]) -> dict[str, Any]:
        first = order[0].call.body  # as sent alone (with the gateway's prompt_cache_key, if any)
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
        if self.config.stream:
            body["stream"], body["stream_options"] = True, {"include_usage": True}
        return body

    def _estimated_share(self, batch: Batch, member: Member, text: str) -> Usage:
        """An early answer's usage, before the provider's arrives: slightly under its estimated share,
        so the last answer's remainder (exact) is never negative."""
        n = len(batch.members)
        own = estimate_text(member.task)
        tasks = sum(estimate_text(m.task) for m in batch.members)
        prompt = member.request.protocol.estimate(batch.body) * self._prompt_scale
        share = (max(0.0, prompt - tasks) / n + own) * _UNDER
        return Usage(int(share), int(estimate_text(text) * _UNDER))

    def _deliver(
        self,
        batch: Batch,
        target: Target,
        head: dict[str, Any],
        answered: list[Member],
        answers: dict[str, str],
        usage: Usage,
    ) -> None:
        """Give each caller its own completion and its share of ``usage`` (shares sum to it)."""
        texts = [answers[batch.task_of(m)] for m in answered]
        own = [estimate_text(m.task) for m in answered]
        shared = max(0, usage.prompt_tokens - sum(own))
        prompts = apportion(usage.prompt_tokens, [shared / len(answered) + o for o in own])
        completions = apportion(usage.completion_tokens, [estimate_text(t) for t in texts])
        cached = apportion(usage.cached_input_tokens, [float(p) for p in prompts])
        for member, text, prompt, completion, read in zip(
            answered, texts, prompts, completions, cached, strict=True
        ):
            share = Usage(prompt, completion, min(read, prompt))
            self._hand_out(batch, target, head, member, text, share)

    def _hand_out(
        self,
        batch: Batch,
        target: Target,
        head: dict[str, Any],
        member: Member,
        text: str,
        usage: Usage,
    ) -> None:
        self.history.record(member.request.task_type, member.target.name, usage.completion_tokens)
        # What the task would have cost alone, from its estimate calibrated by recent batches.
        alone = round(member.request.prompt_estimate * self._prompt_scale)
        result = BatchResult(batch.id, len(batch.members), member.wait_s, max(0, alone - usage.prompt_tokens))
        data = member_answer(head, f"{batch.id}-{batch.task_of(member)}", text, usage)
        if not member.future.done():
            own = UpstreamReply(200, {"content-type": "application/json"}, data)
            member.future.set_result((target, own, result))

    async def _one_by_one(
        self, members: list[Member], batch: Batch | None = None, surcharge: Usage | None = None
    ) -> None:
        """Each member alone. After a batch, the calls count in the batch's tokens both ways (net of
        fallbacks), and ``surcharge`` (a botched reply's usage) is shared out over their usage."""
        extra = surcharge or Usage()
        prompts = apportion(extra.prompt_tokens, [1.0] * len(members))
        completions = apportion(extra.completion_tokens, [1.0] * len(members))

        async def alone(member: Member, more: Usage) -> None:
            started = time.perf_counter()
            try:
                target, reply = await self.upstream.call(member.call, self.catalog.chain(member.target))
            except GatewayError as exc:
                if not member.future.done():
                    member.future.set_exception(exc)
                return
            usage = _usage(member, reply)
            self._learn(member, target, usage, time.perf_counter() - started)
            result = BatchResult(wait_s=member.wait_s)
            if batch is not None and usage is not None:
                reply = _after_batch(reply, usage, more)
                result = BatchResult(batch.id, len(batch.members), member.wait_s, fallback=True)
            if not member.future.done():
                member.future.set_result((target, reply, result))

        await asyncio.gather(
            *(alone(m, Usage(p, c)) for m, p, c in zip(members, prompts, completions, strict=True))
        )

    def _learn(self, member: Member, target: Target, usage: Usage | None, elapsed: float) -> None:
        """A single call's answer length and decode time feed the predictions."""
        if usage is not None:
            self.history.record(member.request.task_type, member.target.name, usage.completion_tokens)
            self.decode.record(target.name, usage.completion_tokens, elapsed)


def _fail_pending(task: asyncio.Task[None], members: list[Member]) -> None:
    """A batch that broke unexpectedly still answers every caller (a 502), never leaves one waiting."""
    if task.cancelled() or task.exception() is None:
        return
    log.error("batch_crashed", error=repr(task.exception()))
    for member in members:
        if not member.future.done():
            member.future.set_exception(UpstreamError("The batched request could not be completed."))


def _usage(member: Member, reply: UpstreamReply) -> Usage | None:
    """A single call's usage, for a complete (not streamed) answer."""
    if reply.status != 200 or reply.chunks is not None:
        return None
    return member.request.protocol.usage(_head(reply.body))


def _after_batch(reply: UpstreamReply, usage: Usage, more: Usage) -> UpstreamReply:
    """A fallback's reply, charged its share of the botched batch call and counted with the batch."""
    metrics.BATCH_TOKENS.inc(usage.total + more.total)
    metrics.BATCH_TOKENS_UNBATCHED.inc(usage.total)
    if not more.total:
        return reply
    body = orjson.loads(reply.body)
    body["usage"].update(
        prompt_tokens=usage.prompt_tokens + more.prompt_tokens,
        completion_tokens=usage.completion_tokens + more.completion_tokens,
        total_tokens=usage.total + more.total,
    )
    return UpstreamReply(reply.status, reply.headers, orjson.dumps(body))


def _head(body: bytes) -> dict[str, Any]:
    try:
        whole = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return whole if isinstance(whole, dict) else {}


def _content(whole: dict[str, Any]) -> str | None:
    try:
        return whole["choices"][0]["message"]["content"]  # type: ignore[no-any-return]
    except (KeyError, IndexError, TypeError):
        return None
