"""What a request gets when a shared store a stage depends on cannot be reached: let through (counted and
logged) or refused with a 503 the client may retry in a second, as the stage's policy says."""

from __future__ import annotations

from typing import Any

from gateway import metrics
from gateway.errors import Unavailable
from gateway.store import StoreError


def let_through_or_refuse(
    exc: StoreError, *, allow: bool, operation: str, log: Any, let_through: str, refusal: str, code: str
) -> None:
    """Return when ``allow`` (the request goes on without this stage), else raise the 503."""
    metrics.STORE_ERRORS.labels(operation).inc()
    if allow:
        log.warning(f"{operation.split('_')[0]}_store_error", error=str(exc), detail=let_through)
        return
    raise Unavailable(refusal, code=code, headers={"Retry-After": "1"})
