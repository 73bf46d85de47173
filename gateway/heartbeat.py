"""Heartbeats: every gateway and autoscaler process records that it is alive, so uptime can be measured.

A process beats every ``interval`` seconds, and each beat covers ``1.5 * interval`` after it: a process
that stops or stalls leaves a gap, and gaps count as downtime. Beats are kept as spans (first and last
beat) rather than one entry per beat, so a whole sprint stays small in Redis: the live span of each
process is one key, ``{prefix}heartbeat:{component}:{instance}``, rewritten at each beat; a span that
ended (the process stopped, or found it had missed its beats) is appended to a capped stream. With the
memory store every beat is a line in the ledger file instead. A component's uptime over a period is the
share of the period covered by at least one of its processes (:func:`uptime`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

import orjson

from gateway.logs import get_logger
from gateway.policy.ledger import LedgerConfig
from gateway.store import Store

log = get_logger("gateway.heartbeat")

GRACE = 1.5
"""A beat covers this many intervals after it, so one late beat is not downtime but a missed one is."""
HEARTBEAT_LINE = "heartbeat"
"""``kind`` of a heartbeat line in the ledger file."""


@dataclass(frozen=True, slots=True)
class Span:
    component: str
    instance: str
    start: float
    last: float
    interval: float
    end: float | None = None
    """Set when the span is over: the stop time, or the last beat plus the grace after a gap."""

    @property
    def until(self) -> float:
        """The end of the time this span covers."""
        return self.end if self.end is not None else self.last + GRACE * self.interval

    def to_json(self) -> bytes:
        return orjson.dumps({k: v for k, v in asdict(self).items() if v is not None})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Span:
        end = data.get("end")
        return cls(
            str(data["component"]),
            str(data["instance"]),
            float(data["start"]),
            float(data["last"]),
            float(data["interval"]),
            float(end) if end is not None else None,
        )


def merge(spans: Iterable[Span]) -> list[Span]:
    """One span per process and start: a finished one wins, else the one with the latest beat."""
    best: dict[tuple[str, str, float], Span] = {}
    for span in spans:
        key = (span.component, span.instance, span.start)
        known = best.get(key)
        if known is None or (known.end is None and (span.end is not None or span.last > known.last)):
            best[key] = span
    return list(best.values())


def uptime(spans: Iterable[Span], start: float, end: float) -> dict[str, float]:
    """Per component, the share of ``[start, end]`` covered by at least one of its processes' spans.

    Components that never beat are absent (unknown, not down)."""
    if end <= start:
        return {}
    by_component: dict[str, list[tuple[float, float]]] = {}
    for span in merge(spans):
        by_component.setdefault(span.component, []).append((max(span.start, start), min(span.until, end)))
    result: dict[str, float] = {}
    for component, pieces in by_component.items():
        covered, reach = 0.0, start
        for low, high in sorted(pieces):
            low = max(low, reach)
            if high > low:
                covered += high - low
                reach = high
        result[component] = covered / (end - start)
    return result


class BeatSink(Protocol):
    async def beat(self, span: Span) -> None: ...

    async def ended(self, span: Span, stopped: bool) -> None: ...


class StoreBeats:
    """Spans in the shared store: the live one as a key (expiring long after a crash), ended ones in a
    capped stream."""

    def __init__(self, store: Store, prefix: str, config: LedgerConfig) -> None:
        self.store = store
        self.prefix = f"{prefix}heartbeat:"
        self.stream = config.heartbeat_stream
        self.maxlen = config.heartbeat_maxlen
        self.retain_s = config.heartbeat_retain_s

    def key(self, span: Span) -> str:
        return f"{self.prefix}{span.component}:{span.instance}"

    async def beat(self, span: Span) -> None:
        await self.store.set(self.key(span), span.to_json(), ttl_s=self.retain_s)

    async def ended(self, span: Span, stopped: bool) -> None:
        await self.store.append_log(self.stream, {"span": span.to_json().decode()}, self.maxlen)
        if stopped:
            await self.store.delete(self.key(span))


class LineBeats:
    """Each beat as a line of the ledger file (the memory store is one process: nothing to share)."""

    def __init__(self, note: Callable[[dict[str, Any]], None]) -> None:
        self.note = note

    async def beat(self, span: Span) -> None:
        self.note({"kind": HEARTBEAT_LINE, **orjson.loads(span.to_json())})

    async def ended(self, span: Span, stopped: bool) -> None:
        await self.beat(span)


class Heartbeat:
    """Beats in a background task until :meth:`stop`; a failed write is logged, never fatal."""

    def __init__(
        self, component: str, interval_s: float, sink: BeatSink, clock: Callable[[], float] = time.time
    ) -> None:
        self.component = component
        self.interval_s = interval_s
        self.sink = sink
        self.clock = clock
        self.instance = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.span: Span | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_warning = 0.0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def __aenter__(self) -> Heartbeat:
        """Beat while the ``async with`` block runs (how the gateway's services hold it)."""
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        """End the span now: a clean stop is not counted as downtime beyond this moment."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.span is not None:
            now = self.clock()
            span, self.span = replace(self.span, last=now, end=now), None
            await self._write(self.sink.ended(span, stopped=True))

    async def beat(self) -> None:
        now = self.clock()
        span = self.span
        if span is not None and now - span.last > GRACE * self.interval_s:
            # Missed beats (a stalled loop, a suspended host): the old span ends where its cover ended.
            await self._write(self.sink.ended(replace(span, end=span.until), stopped=False))
            span = None
        if span is None:
            span = Span(self.component, self.instance, now, now, self.interval_s)
        self.span = span = replace(span, last=now)
        await self._write(self.sink.beat(span))

    async def _run(self) -> None:
        while True:
            await self.beat()
            await asyncio.sleep(self.interval_s)

    async def _write(self, operation: Any) -> None:
        try:
            await operation
        except Exception as exc:  # the store is down: the process is still up, the next beat says so
            now = time.monotonic()
            if now - self._last_warning > 10:
                self._last_warning = now
                error = f"{type(exc).__name__}: {exc}"
                log.warning("heartbeat_failed", component=self.component, error=error)


def heartbeat_for(
    config: LedgerConfig,
    store: Store,
    prefix: str,
    component: str,
    note: Callable[[dict[str, Any]], None] | None = None,
) -> Heartbeat | None:
    """The component's heartbeat: to the store when it is shared (Redis), else as lines via ``note``
    (the ledger file); None when heartbeats are off or have nowhere to go."""
    if config.heartbeat_interval_s <= 0:
        return None
    if store.kind == "redis":
        return Heartbeat(component, config.heartbeat_interval_s, StoreBeats(store, prefix, config))
    if note is not None:
        return Heartbeat(component, config.heartbeat_interval_s, LineBeats(note))
    return None
