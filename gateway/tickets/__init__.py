"""The ticket primitive: consume from every bucket that applies, all or nothing, then settle the real amount.

``base.py`` is the contract, ``memory.py`` one process's implementation, ``redis.py`` the shared one (one
Lua script per step). Rate limits and the runaway brake are built on it.
"""

from gateway.tickets.base import Bucket, Grant, Level, TicketStore
from gateway.tickets.memory import MemoryTickets

__all__ = ["Bucket", "Grant", "Level", "MemoryTickets", "TicketStore"]


def tickets_for(store: object, prefix: str) -> TicketStore:
    """The ticket store beside the gateway's store: Redis when it holds a Redis client, else memory."""
    client = getattr(store, "redis", None)
    if client is None:
        return MemoryTickets()
    from gateway.tickets.redis import RedisTickets

    return RedisTickets(client, prefix)
