"""The budget ledger: one interface, two implementations (in-process memory, Redis Lua) with one meaning.

A bucket (one period of one sprint) holds, per agent and for the sprint as a whole, the tokens committed
(``used``), the tokens reserved by requests in flight (``res``), the tokens a cache hit saved
(``saved``) and the operator's adjustment (``adj``); plus the live reservations with their expiry, the
alert flags already raised, and, for sprints that give a number of agents, the seats taken.

Invariant kept by :meth:`Ledger.reserve`, which checks and reserves in one atomic step: for the sprint
and for every agent not borrowing, ``used + res <= floor(limit * block_at)`` after any reservation. Only a
commit may go past it, by what the answer used beyond its reservation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

SPRINT = ""
"""The agent name under which the sprint's totals are kept (field ``used`` rather than ``used:NAME``)."""


def field_name(kind: str, agent: str = SPRINT) -> str:
    return f"{kind}:{agent}" if agent else kind


@dataclass(frozen=True, slots=True)
class Ask:
    """One reservation: who, how many tokens, and the limits the policy sets for this request."""

    agent: str
    hold_id: str
    tokens: int
    agent_tokens: int
    """The agent's budget (before the operator's adjustment); used when ``seats`` is 0 or seated."""
    sprint_tokens: int
    block_at: float
    pause_at: float
    """Sprint fraction past which a non-critical request is refused; 0: never paused."""
    critical: bool
    borrow: bool
    """May go past the agent's own limit while the sprint has room (redistribution)."""
    seats: int
    """0: agents are named by the policy; N: the first N distinct agents of the period take the seats."""
    unknown_tokens: int
    """Budget of an agent without a seat; 0: refused."""
    ttl_s: float
    expire_at: float | None
    """Unix time after which the bucket's keys may be dropped; None: kept."""


@dataclass(frozen=True, slots=True)
class Charge:
    """Settling one reservation: the tokens the answer used and those a cache hit saved."""

    agent: str
    hold_id: str
    tokens: int
    saved: int
    agent_tokens: int
    sprint_tokens: int
    alert_at: float
    block_at: float
    low_remaining: float
    expire_at: float | None


@dataclass(frozen=True, slots=True)
class Balance:
    """The agent's and the sprint's accounts right after an operation (limits include adjustments)."""

    agent_used: int
    agent_reserved: int
    agent_limit: int
    sprint_used: int
    sprint_reserved: int
    sprint_limit: int


@dataclass(frozen=True, slots=True)
class Verdict:
    status: str
    """``ok``, or why not: ``agent`` / ``sprint`` (budget spent), ``paused``, ``unknown`` (no seat)."""
    balance: Balance
    borrowed: bool = False
    first_block: bool = False
    """This refusal is the agent's first in the period (the blocked alert is raised once)."""
    agent_base: int = 0
    """The agent's budget before adjustment, as decided by this reservation (commit needs it)."""


@dataclass(frozen=True, slots=True)
class Settled:
    balance: Balance
    fired: tuple[str, ...] = ()
    """Thresholds crossed for the first time in the period: ``alert``, ``block``, ``low``."""


@dataclass(slots=True)
class Account:
    used: int = 0
    reserved: int = 0
    saved: int = 0
    adjust: int = 0


@dataclass(slots=True)
class Accounts:
    """A snapshot of one bucket, for the admin API."""

    sprint: Account = field(default_factory=Account)
    agents: dict[str, Account] = field(default_factory=dict)
    seats: list[str] = field(default_factory=list)

    @classmethod
    def from_fields(cls, fields: dict[str, int], seats: list[str]) -> Accounts:
        accounts = cls(seats=sorted(seats))
        attribute = {"used": "used", "res": "reserved", "saved": "saved", "adj": "adjust"}
        for name, value in fields.items():
            kind, _, agent = name.partition(":")
            if kind not in attribute:
                continue
            account = accounts.agents.setdefault(agent, Account()) if agent else accounts.sprint
            setattr(account, attribute[kind], value)
        return accounts


def cap(limit: int, fraction: float) -> int:
    """Tokens allowed under ``limit`` at ``fraction`` (Lua's ``math.floor`` of the same double)."""
    return int(limit * fraction // 1)


class Ledger(ABC):
    """Budget accounts shared by every worker and replica that share the store."""

    @abstractmethod
    async def reserve(self, bucket: str, ask: Ask) -> Verdict:
        """Purge expired reservations, then check every limit and reserve ``ask.tokens``, or refuse."""

    @abstractmethod
    async def commit(self, bucket: str, charge: Charge) -> Settled:
        """Release the reservation (if still live), add the tokens used and saved, raise new alerts."""

    @abstractmethod
    async def snapshot(self, bucket: str) -> Accounts:
        """Every account of the bucket, after purging expired reservations."""

    @abstractmethod
    async def reset(self, bucket: str, agent: str | None = None) -> None:
        """Forget what the bucket (or one agent) used, saved and was adjusted by; live reservations stay."""

    @abstractmethod
    async def adjust(self, bucket: str, agent: str | None, tokens: int, expire_at: float | None) -> None:
        """Add ``tokens`` (may be negative) to the sprint's or one agent's limit in this bucket."""
