"""Schema of the ``batching`` policy section: small similar tasks share one provider call."""

from __future__ import annotations

from pydantic import Field

from gateway.policy.core import Section


class BatchingConfig(Section):
    """Micro-batching: small similar chat completions wait a few milliseconds and share one provider call."""

    enabled: bool = True
    """``false``: no request ever waits for a batch."""
    task_types: list[str] = ["refactor", "test"]
    """Task types batched without ``X-Batchable: true`` (when under the size limits)."""
    max_lines: int = Field(100, ge=1)
    """``X-Lines-Estimate`` must be under this for a task type in ``task_types`` to be batched."""
    max_prompt_tokens: int = Field(2000, ge=1)
    """The task's own prompt estimate must be under this."""
    max_batch: int = Field(5, ge=2, le=50)
    """A group is sent as soon as it has this many requests."""
    window_ms: float = Field(100.0, gt=0)
    """The oldest request in a group waits at most this long (milliseconds) for others."""
    json_mode: bool = True
    """Ask for ``response_format: json_object`` (turn off for models that do not support it)."""
    shuffle: bool = True
    """Shuffle task order inside the prompt to reduce position bias; ``false`` keeps arrival order."""
