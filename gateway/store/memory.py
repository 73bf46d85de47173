"""One process's state: enough for a single gateway process, lost when it stops."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from itertools import count
from typing import TYPE_CHECKING

from gateway.store.base import LogEntry, Store

if TYPE_CHECKING:
    from gateway.budget.ledger import Ledger


class MemoryStore(Store):
    """One process's state: an LRU dict bounded in entries and bytes, with expiries, and bounded logs."""

    kind = "memory"
    _OVERHEAD = 120
    """Approximate bytes Python spends per entry beyond its key and value."""

    def __init__(self, max_items: int = 100_000, max_bytes: int = 32 * 1024 * 1024) -> None:
        self._data: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()
        self._logs: dict[str, deque[LogEntry]] = {}
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._bytes = 0
        self._seq = count(1)
        self._ledger: Ledger | None = None

    def _live(self, key: str) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and expires <= time.monotonic():
            self._drop(key)
            return None
        self._data.move_to_end(key)
        return value

    def _drop(self, key: str) -> bool:
        item = self._data.pop(key, None)
        if item is None:
            return False
        self._bytes -= len(key) + len(item[0]) + self._OVERHEAD
        return True

    async def get(self, key: str) -> bytes | None:
        return self._live(key)

    async def set(
        self, key: str, value: bytes, ttl_s: float | None = None, only_if_absent: bool = False
    ) -> bool:
        if only_if_absent and (held := self._live(key)) is not None:
            return held == value
        self._drop(key)
        self._data[key] = (value, time.monotonic() + ttl_s if ttl_s else None)
        self._bytes += len(key) + len(value) + self._OVERHEAD
        while len(self._data) > self._max_items or (self._bytes > self._max_bytes and len(self._data) > 1):
            self._drop(next(iter(self._data)))
        return True

    async def delete(self, *keys: str) -> int:
        return sum(self._drop(k) for k in keys)

    async def delete_if_equal(self, key: str, value: bytes) -> bool:
        return self._live(key) == value and self._drop(key)

    async def delete_matching(self, prefix: str, suffix: str = "") -> int:
        doomed = [k for k in self._data if k.startswith(prefix) and k.endswith(suffix)]
        return sum(self._drop(k) for k in doomed)

    async def append_log(self, stream: str, fields: LogEntry, maxlen: int) -> None:
        log = self._logs.get(stream)
        if log is None or log.maxlen != maxlen:
            log = self._logs[stream] = deque(log or (), maxlen=maxlen)
        log.append({"id": f"{int(time.time() * 1000)}-{next(self._seq)}", **fields})

    async def read_log(self, stream: str, count: int) -> list[LogEntry]:
        log = self._logs.get(stream, deque())
        return list(reversed(log))[:count]

    async def ping(self) -> bool:
        return True

    def budget_ledger(self, prefix: str) -> Ledger:
        from gateway.budget.memory import MemoryLedger

        if self._ledger is None:
            self._ledger = MemoryLedger()
        return self._ledger
