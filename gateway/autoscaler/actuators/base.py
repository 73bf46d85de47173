"""The actuator contract (read and set one target's replica count), its errors, and the shared retry.

Every backend maps its failures to :class:`ActuatorError` with a ``transient`` flag in one place, so the
retry loop and the runner never look at HTTP statuses or socket errors themselves.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import orjson

from gateway.logs import get_logger
from gateway.policy.core import RetryConfig

T = TypeVar("T")
log = get_logger("gateway.autoscaler")

TRANSIENT_STATUSES = frozenset({408, 409, 425, 429})
"""Besides 5xx: timeouts, conflicts (a concurrent writer) and rate limits are worth another try."""


class ActuatorError(Exception):
    """A target could not be read or scaled; ``transient`` errors are retried with backoff."""

    def __init__(self, message: str, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class ActuatorSetupError(Exception):
    """The actuator cannot even be built (no credentials, unreadable kubeconfig): a configuration error."""


class Actuator(ABC):
    """One scalable target: a Kubernetes workload, a Swarm service, or a simulation."""

    description: str

    @abstractmethod
    async def get_replicas(self) -> int:
        """The replica count the target is currently set to (so manual changes are seen)."""

    @abstractmethod
    async def set_replicas(self, replicas: int) -> None: ...

    async def close(self) -> None:
        return None


async def with_retry(
    call: Callable[[], Awaitable[T]],
    retry: RetryConfig,
    what: str,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run ``call``, retrying transient :class:`ActuatorError` with backoff until the deadline."""
    started = clock()
    attempt = 1
    while True:
        try:
            return await call()
        except ActuatorError as exc:
            delay = min(retry.backoff_max_s, retry.backoff_base_s * 2 ** (attempt - 1))
            out_of_time = clock() - started + delay > retry.deadline_s
            if not exc.transient or attempt >= retry.attempts or out_of_time:
                raise
            log.warning("autoscaler.retry", what=what, attempt=attempt, delay_s=delay, error=str(exc))
            await sleep(delay)
            attempt += 1


async def request_json(
    session: aiohttp.ClientSession, method: str, url: str, what: str, **kwargs: Any
) -> Any:
    """One HTTP call to a control API, its JSON body decoded, every failure as an :class:`ActuatorError`."""
    try:
        async with session.request(method, url, **kwargs) as response:
            body = await response.read()
            status = response.status
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise ActuatorError(f"{what}: {type(exc).__name__}: {exc}", transient=True) from exc
    if status >= 400:
        excerpt = body[:300].decode(errors="replace").strip()
        transient = status >= 500 or status in TRANSIENT_STATUSES
        raise ActuatorError(f"{what}: HTTP {status}: {excerpt}", transient=transient)
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError as exc:
        raise ActuatorError(f"{what}: response is not JSON", transient=False) from exc


def replica_count(value: Any, what: str) -> int:
    """A replica count from a decoded response, or a permanent error saying which field was odd."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ActuatorError(f"{what}: unexpected replica count {value!r}", transient=False)
    return value
