"""The request ledger's writer: the request path only puts an item on a bounded queue, never waits.

A background task takes items in batches, builds and encodes the records, and writes each batch in one
store round trip or file append. When the queue is full, or the store or disk fails, records are
dropped and counted (``gateway_ledger_dropped_total{reason}``) rather than slowing or failing requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import orjson

from gateway import metrics
from gateway.context import Outcome
from gateway.ledger.record import Finished, RecordBuilder, written
from gateway.ledger.sinks import FileSink, Sink, StreamSink
from gateway.logs import get_logger
from gateway.policy import Policy
from gateway.pricing import PriceBook
from gateway.store import Store

log = get_logger("gateway.ledger")
Item = tuple[Finished, Outcome | None] | dict[str, Any]
_WARN_EVERY_S = 10.0
_LINGER_S = 0.05
"""After the first record of a batch, wait this long for more: one write then carries many records."""


class RequestLedger:
    def __init__(self, sink: Sink, builder: RecordBuilder, queue_size: int, batch_size: int) -> None:
        self.sink = sink
        self.builder = builder
        self.batch_size = batch_size
        self._queue: asyncio.Queue[Item] = asyncio.Queue(queue_size)
        self._task: asyncio.Task[None] | None = None
        self._last_warning = 0.0

    @classmethod
    def for_policy(cls, policy: Policy, store: Store, prices: PriceBook) -> RequestLedger:
        """The Redis stream when the store is Redis, else the local file."""
        config = policy.ledger
        sink: Sink
        if store.kind == "redis":
            sink = StreamSink(store, config.stream, config.maxlen)
        else:
            sink = FileSink(config.file, config.file_max_bytes, config.file_backups)
        return cls(sink, RecordBuilder(policy, prices), config.queue_size, config.batch_size)

    def record(self, done: Finished, outcome: Outcome | None) -> None:
        """Queue one request's record; never raises, never waits."""
        self._put((done, outcome))

    def note(self, line: dict[str, Any]) -> None:
        """Queue another line for the same destination (heartbeats, with the local file)."""
        self._put(line)

    def _put(self, item: Item) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self._dropped("queue_full", 1, "the ledger queue is full")

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def close(self, timeout_s: float = 5.0) -> None:
        """Write what is queued (bounded in time), then stop."""
        task, self._task = self._task, None
        if task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout_s)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self.sink.close()

    async def _run(self) -> None:
        while True:
            items = [await self._queue.get()]
            if self._queue.qsize() < self.batch_size:
                await asyncio.sleep(_LINGER_S)
            while len(items) < self.batch_size and not self._queue.empty():
                items.append(self._queue.get_nowait())
            try:
                lines = [line for line in map(self._encode, items) if line is not None]
                if lines:
                    await self.sink.write(lines)
                    metrics.LEDGER_RECORDS.inc(len(lines))
            except Exception as exc:  # the requests have long been answered: count, log, go on
                self._dropped(self.sink.reason, len(items), f"{type(exc).__name__}: {exc}")
            finally:
                for _ in items:
                    self._queue.task_done()

    def _encode(self, item: Item) -> bytes | None:
        try:
            line = item if isinstance(item, dict) else written(self.builder.build(*item))
            return orjson.dumps(line)
        except Exception as exc:
            self._dropped("encode_error", 1, f"{type(exc).__name__}: {exc}")
            return None

    def _dropped(self, reason: str, count: int, error: str) -> None:
        metrics.LEDGER_DROPPED.labels(reason).inc(count)
        now = time.monotonic()
        if now - self._last_warning > _WARN_EVERY_S:
            self._last_warning = now
            log.warning("ledger_dropped", reason=reason, records=count, error=error)
