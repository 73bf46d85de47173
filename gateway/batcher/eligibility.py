"""Which requests may wait for a micro-batch, and what the members of one group must share.

Pure functions of the request's facts and the ``batching`` section, so the gateway (live requests) and
the what-if replay (ledger records, other policies) decide the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.context import Request
from gateway.policy.batching import BatchingConfig
from gateway.protocols.openai import IGNORED
from gateway.tokens import estimate_text

NOT_SHARED = frozenset(
    {
        "messages",
        "model",
        "user",
        "metadata",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
    }
)
"""Per-member fields: answer limits are the members' own (the batch's is their sum)."""


@dataclass(slots=True)
class BatchFacts:
    """What batching decides on: from a live request (:meth:`of`) or from a ledger record."""

    task_type: str | None
    lines: int | None
    batchable: bool | None
    """``X-Batchable``: True forces batching (shape permitting), False forbids it."""
    task: str | None = None
    """The task's text (the last user message) when the request's shape allows batching."""
    tokens: int | None = None
    """The task's token estimate, computed on first use from ``task`` (ledger records carry it)."""

    @classmethod
    def of(cls, request: Request) -> BatchFacts:
        task = request.protocol.batch_task(request.stream, request.body)
        return cls(request.task_type, request.lines_estimate, request.batchable, task)

    @property
    def fits(self) -> bool:
        return self.task is not None or self.tokens is not None

    def task_tokens(self) -> int | None:
        if self.tokens is None and self.task is not None:
            self.tokens = estimate_text(self.task)
        return self.tokens


def admits(config: BatchingConfig, facts: BatchFacts) -> bool:
    """Whether the request waits for a batch; cheap checks first, so most requests never estimate."""
    if not config.enabled or facts.batchable is False or not facts.fits:
        return False
    if facts.batchable:
        return True
    if facts.task_type not in config.task_types:
        return False
    if facts.lines is not None and facts.lines >= config.max_lines:
        return False
    tokens = facts.task_tokens()
    return tokens is not None and tokens < config.max_prompt_tokens


def shared_context(body: dict[str, Any]) -> dict[str, Any]:
    """What every member of one batch must have in common: the messages before the task and the
    sampling parameters (the model and the cache scope are added by the caller)."""
    shared = {k: v for k, v in body.items() if k not in NOT_SHARED and k not in IGNORED}
    shared["messages"] = body["messages"][:-1]
    return shared
