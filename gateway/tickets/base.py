"""The contract of the ticket primitive, the same in memory and in Redis.

Semantics: a **sliding-window log**. A bucket holds the tickets taken in the last ``window_s`` seconds,
each with its amount (1 for a request, the estimate for tokens). A consume fits when the bucket's sum plus
the amount stays within ``capacity``; over any interval of ``window_s`` seconds no more than ``capacity``
is ever admitted (exact, unlike a fixed window at its edge or a token bucket's burst of twice the rate).
``settle`` replaces a ticket's amount with the real one (0 removes it: concurrency slots, cache hits), so
an estimate's difference is given back, or a larger real usage is owed, in the window it was taken in.

A bucket with ``lease=True`` is a concurrency slot: its tickets are returned by ``settle(..., 0)``, and
``window_s`` is only the lease after which a crashed holder's ticket lapses.

Times are the caller's clock (seconds, passed in), so tests control them and replicas must keep their
clocks in sync (NTP); one flag per consume (``gate``) lets a pause refuse everything in the same step.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Bucket:
    """One counter: ``key`` names resource × scope × window (e.g. ``tpm:agent:alice:60``)."""

    key: str
    capacity: int
    window_s: float
    amount: int
    """What this request takes now (the estimate)."""


@dataclass(frozen=True, slots=True)
class Level:
    """A bucket's state after the call: what the headers report."""

    capacity: int
    remaining: int
    reset_s: float
    """Seconds until the bucket is empty again (its newest ticket leaves the window)."""


@dataclass(frozen=True, slots=True)
class Grant:
    """The outcome of a consume: all buckets taken, or none."""

    ok: bool
    levels: tuple[Level, ...]
    refused: int = -1
    """Index of the first bucket that did not fit (-1: granted, or refused by the gate)."""
    retry_after_s: float = 0.0
    """When the refused amount would fit; -1 when it never can (larger than the capacity)."""
    gate: str | None = None
    """The gate flag's value when a raised flag refused the request."""


class TicketStore(ABC):
    """Consume and settle tickets; every method is one atomic step (one Lua script on Redis)."""

    @abstractmethod
    async def consume(
        self, ticket: str, buckets: Sequence[Bucket], now: float, gate: str | None = None
    ) -> Grant:
        """Take every bucket's amount under ``ticket`` or none; refused at once while flag ``gate`` is set."""

    @abstractmethod
    async def settle(self, ticket: str, buckets: Sequence[Bucket], now: float) -> None:
        """Set ``ticket``'s amount in each bucket to ``bucket.amount`` (0 returns it). A ticket that has
        left its window is not charged again."""

    @abstractmethod
    async def raise_flag(self, key: str, value: str) -> bool:
        """Set flag ``key`` (a pause); False when it was already set (the first raiser reports it)."""

    @abstractmethod
    async def clear_flag(self, key: str) -> bool:
        """Lower flag ``key``; False when it was not set."""

    @abstractmethod
    async def flags(self, prefix: str) -> dict[str, str]:
        """Every raised flag whose key starts with ``prefix``."""
