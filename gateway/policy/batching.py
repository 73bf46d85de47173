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
    """The oldest request in a group waits at most this long (milliseconds) for others; a group goes
    sooner when no partner came within the gap partners lately arrived in."""
    max_added_ms: float = Field(700.0, ge=0)
    """No member may be predicted to wait longer than this (milliseconds) because of its batch: its wait
    for partners plus the decode time of the answers written before its own. Batched tasks are small
    (answers of ~30-110 tokens, under ~1 s alone); 700 keeps each under ~1.7 s, with room for
    prediction error below the ~1.9 s P95 that a coding sprint's larger answers set on their own, so
    batching does not raise the P95. Lower it where small answers set the P95; ``0`` batches only
    answers predicted to come first."""
    min_partner_share: float = Field(0.3, ge=0, le=1)
    """A request that finds no open group waits for partners only when at least this share of recent
    openers of its group got one within ``window_ms``; otherwise it goes at once."""
    decode_ms_per_token: float = Field(10.0, gt=0)
    """Decode time per completion token assumed until the provider's calls have shown their own."""
    output_tokens_prior: int = Field(256, ge=1)
    """Completion tokens assumed for a task without ``max_tokens`` until its task type has history."""
    stream: bool = True
    """Ask the provider to stream the batch and hand each member its answer as soon as it is complete,
    shortest expected answers first (``false``: read the reply whole, tasks shuffled)."""
    json_mode: bool = True
    """Ask for ``response_format: json_object`` (turn off for models that do not support it)."""
    shuffle: bool = True
    """Shuffle task order inside the prompt to reduce position bias; ``false`` keeps arrival order."""
