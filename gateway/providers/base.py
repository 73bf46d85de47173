"""The provider contract: send one request, get back a status, a few headers and a body or a stream.

Retries, fallbacks, caching and budgets wrap providers from outside (see ``upstream.py``); a provider
only knows how to reach its own API.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from gateway.policy.core import ProviderConfig


@dataclass(frozen=True, slots=True)
class ProviderRequest:
    """One call to ``/v1/{path}`` of a provider; ``body`` is relayed as bytes so unknown fields survive."""

    path: str
    body: bytes
    stream: bool = False
    method: str = "POST"
    headers: dict[str, str] | None = None
    """Headers to send instead of the default JSON content type (passthrough routes)."""
    query: str = ""


@dataclass(slots=True)
class UpstreamReply:
    """One provider answer. ``body`` is set for whole answers, ``chunks`` for streams (raw SSE bytes)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    chunks: AsyncIterator[bytes] | None = None
    release: Callable[[], Awaitable[None]] | None = None

    async def close(self) -> None:
        if self.release is not None:
            release, self.release = self.release, None
            await release()


class Provider(ABC):
    """One upstream API, with the connection pool it owns for the life of the process."""

    def __init__(self, name: str, config: ProviderConfig) -> None:
        self.name = name
        self.config = config

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open long-lived resources (called once, from the app's cleanup context)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what ``start`` opened."""

    @abstractmethod
    async def send(self, request: ProviderRequest) -> UpstreamReply:
        """Connection problems raise ``aiohttp.ClientError`` or ``asyncio.TimeoutError``; HTTP errors
        come back as a reply with their status."""

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in what the gateway returns or logs."""
        return tuple(s for s in (self.config.api_key,) if s)
