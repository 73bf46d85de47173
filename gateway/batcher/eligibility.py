"""Which requests may wait for a micro-batch, and what the members of one group must share.

Pure functions of the request's facts and the ``batching`` section, so the gateway (live requests) and
the what-if replay (ledger records, other policies) decide the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.context import RequestContext
from gateway.policy.batching import BatchingConfig
from gateway.tokens import estimate_text
from gateway.validation import CHAT

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
_UNBATCHABLE = ("tools", "functions", "tool_choice", "function_call", "logprobs", "audio", "modalities")


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
    def of(cls, ctx: RequestContext) -> BatchFacts:
        task = task_text(ctx.endpoint, ctx.stream, ctx.body)
        return cls(ctx.task_type, ctx.lines_estimate, ctx.batchable, task)

    @property
    def fits(self) -> bool:
        return self.task is not None or self.tokens is not None

    def task_tokens(self) -> int | None:
        if self.tokens is None and self.task is not None:
            self.tokens = estimate_text(self.task)
        return self.tokens


def task_text(endpoint: str, stream: bool, body: dict[str, Any]) -> str | None:
    """The task when the request's shape allows batching: a plain, non-streamed chat completion with one
    choice, no tools, text output and a last message from the user; else None."""
    if endpoint != CHAT or stream:
        return None
    if (body.get("n") or 1) != 1 or any(body.get(name) for name in _UNBATCHABLE):
        return None
    response_format = body.get("response_format")
    if response_format and not (isinstance(response_format, dict) and response_format.get("type") == "text"):
        return None
    messages = body.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    if not isinstance(last, dict) or last.get("role") != "user" or not isinstance(last.get("content"), str):
        return None
    return last["content"]  # type: ignore[no-any-return]


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
    shared = {k: v for k, v in body.items() if k not in NOT_SHARED}
    shared["messages"] = body["messages"][:-1]
    return shared
