"""The routing decision log (stream ``model_routing_log``): written without making the request wait.

Each entry is appended by a background task, so a slow or unreachable store never delays or fails a
request; failures are counted (``gateway_store_errors_total{operation="routing_log"}``) and logged.
Redis keeps the stream shared by every replica; the memory store keeps a bounded in-process deque.
"""

from __future__ import annotations

import asyncio

from gateway import metrics
from gateway.logs import get_logger
from gateway.store import LogEntry, Store

log = get_logger("gateway.router")

_INTS = frozenset({"prompt_tokens_estimate", "max_output_tokens"})
_FLOATS = frozenset({"budget_left", "saved_usd"})
Value = str | int | float | None


class RoutingLog:
    """Appends decision entries in the background and reads the newest back for the admin API."""

    def __init__(self, store: Store, stream: str, maxlen: int, max_pending: int = 1000) -> None:
        self.stream = stream
        self._store = store
        self._maxlen = maxlen
        self._max_pending = max_pending
        self._pending: set[asyncio.Task[None]] = set()

    def record(self, entry: dict[str, Value]) -> None:
        """Schedule one append (None values are stored as empty strings); never raises, never waits."""
        if len(self._pending) >= self._max_pending:
            self._failed("too many pending writes; entry dropped")
            return
        fields = {k: "" if v is None else str(v) for k, v in entry.items()}
        task = asyncio.get_running_loop().create_task(self._append(fields))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _append(self, fields: LogEntry) -> None:
        try:
            await self._store.append_log(self.stream, fields, self._maxlen)
        except Exception as exc:  # any store failure: the request has long been answered
            self._failed(f"{type(exc).__name__}: {exc}")

    def _failed(self, error: str) -> None:
        metrics.STORE_ERRORS.labels("routing_log").inc()
        log.warning("routing_log_failed", stream=self.stream, error=error)

    async def read(self, limit: int) -> list[dict[str, Value]]:
        """The newest ``limit`` entries, newest first, numbers as numbers and empty fields as null."""
        return [
            {k: _typed(k, v) for k, v in entry.items()}
            for entry in await self._store.read_log(self.stream, limit)
        ]

    async def drain(self, timeout_s: float = 2.0) -> None:
        """Wait (bounded) for pending appends, at shutdown or in tests."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=timeout_s)


def _typed(key: str, value: str) -> Value:
    if value == "":
        return None
    try:
        if key in _INTS:
            return int(value)
        if key in _FLOATS:
            return float(value)
    except ValueError:
        return value
    return value
