"""The ledger record, defined once: what the writer writes and what the report and the replay read back.

On the wire a record is a flat JSON object whose keys are this dataclass's field names (``arrival`` is
written as ``time``, ISO 8601 UTC to the millisecond), with the fields that do not apply left out, and
``schema``, the version of this shape. :meth:`LedgerRecord.from_record` reads every version: records
with no ``schema`` field (version 0, written before it existed) have the same fields; a newer record's
unknown fields are skipped. Fields are only ever added, so old ledgers stay readable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, get_args, get_type_hints

from gateway.context import Usage

SCHEMA = 1
"""Version written in every record's ``schema`` field (absent: 0, the shape before versions)."""
TIME_KEY = "time"


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    """One request, as the ledger keeps it. The README's record field table documents every field
    (``tests/test_ledger.py`` checks that it names exactly these)."""

    request_id: str
    endpoint: str
    """``chat.completions``, ``completions``, ``embeddings``, ``models`` or ``passthrough``."""
    status: int
    """The HTTP status the client got."""
    arrival: float
    """Unix seconds when the request arrived (the ``time`` key)."""
    latency_ms: float
    """Arrival to last byte."""
    schema: int = SCHEMA
    error: str | None = None
    """The gateway's error code (``budget_exceeded``, ``missing_api_key``, ...)."""
    # Who asked, and for what: only requests that got past identification have these.
    agent: str | None = None
    team: str | None = None
    task_type: str | None = None
    priority: str | None = None
    task_id: str | None = None
    sprint: str | None = None
    """The sprint the budget charged, else ``X-Sprint``."""
    # What routing and budgets decide on, and what they decided.
    requested_model: str | None = None
    model: str | None = None
    rule: str | None = None
    prompt_estimate: int | None = None
    max_tokens: int | None = None
    lines: int | None = None
    budget_left: float | None = None
    stream: bool | None = None
    upstream_ms: float | None = None
    """Time waiting on the provider (batch window included)."""
    # The cache.
    cache: str | None = None
    """HIT, MISS or BYPASS."""
    cache_key: str | None = None
    content_key: str | None = None
    """A hash of the answer-changing fields without model and scope: the replay's cache key."""
    cache_control: str | None = None
    deterministic: bool | None = None
    # Batching.
    batchable: bool | None = None
    task_tokens: int | None = None
    batch_group: str | None = None
    """A hash of the shared context: requests that may share a batch."""
    batch_id: str | None = None
    batch_size: int | None = None
    batch_wait_ms: float | None = None
    # Tokens and cost, when the request was answered.
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens_used: int | None = None
    """Provider tokens charged to this request (0 for a cache hit)."""
    tokens_saved: int | None = None
    saved_reason: str | None = None
    """``cache`` or ``batch``."""
    cost_usd: float | None = None
    """Priced at the model's own rates, prompt-cache reads and writes at theirs."""
    cache_read_tokens: int | None = None
    """Prompt tokens the provider read from its prompt cache (part of ``prompt_tokens``)."""
    cache_write_tokens: int | None = None
    """Prompt tokens the provider wrote to its prompt cache (part of ``prompt_tokens``)."""
    provider_cache_saved_usd: float | None = None
    """What the provider's prompt cache saved: the prompt at the plain input rate minus its cost with
    cache reads and writes at theirs (negative when writing costs more than reading saved)."""
    baseline_model: str | None = None
    baseline_cost_usd: float | None = None
    prompt: Any = None
    """Messages, prompt or input: only with ``ledger.include_prompts``."""

    @property
    def identified(self) -> bool:
        """The request got past identification (401s and bad JSON did not)."""
        return self.agent is not None

    @property
    def usage(self) -> Usage | None:
        """The usage of the answer the caller got (for a hit: the stored answer's)."""
        if self.prompt_tokens is None:
            return None
        return Usage(self.prompt_tokens, self.completion_tokens or 0)

    @property
    def alone(self) -> Usage | None:
        """What the request would have cost sent on its own: its answer's usage plus what a batch saved
        (prompt tokens only: a batch member's completion is what it would be alone)."""
        usage = self.usage
        if usage is not None and self.saved_reason == "batch":
            return Usage(usage.prompt_tokens + (self.tokens_saved or 0), usage.completion_tokens)
        return usage

    def to_record(self) -> dict[str, Any]:
        """The JSON object written to the ledger: set fields only, ``time`` first."""
        row: dict[str, Any] = {TIME_KEY: iso(self.arrival)}
        for name in _WRITTEN:
            value = getattr(self, name)
            if value is not None:
                row[name] = value
        return row

    @classmethod
    def from_record(cls, row: Mapping[str, Any]) -> LedgerRecord:
        """A record read back, of any schema version. Raises ``KeyError``, ``TypeError`` or
        ``ValueError`` for a row that is not a record (no time, a status that is not a number...)."""
        values: dict[str, Any] = {"arrival": datetime.fromisoformat(row[TIME_KEY]).timestamp(), "schema": 0}
        for key, value in row.items():
            read = _READ.get(key)
            if read is not None and value is not None:
                values[key] = read(value)
        return cls(**values)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _reader(hint: Any) -> Callable[[Any], Any]:
    """How a field's JSON value becomes its type: ``int``, ``float``, ``str``, ``bool``, else as is."""
    kinds = [kind for kind in get_args(hint) if kind is not type(None)] or [hint]
    kind = kinds[0]
    if kind is float:
        return _number
    if kind in (int, str, bool):
        return lambda value: _exact(kind, value)
    return lambda value: value


def _number(value: Any) -> float:
    if type(value) not in (int, float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _exact(kind: type, value: Any) -> Any:
    """Numbers, text and flags are taken as written (an ``int`` field also takes a whole float)."""
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if type(value) is not kind:
        raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
    return value


_HINTS = get_type_hints(LedgerRecord)
FIELDS: tuple[str, ...] = tuple(TIME_KEY if f.name == "arrival" else f.name for f in fields(LedgerRecord))
"""Every key a record may have, as written."""
_WRITTEN = tuple(f.name for f in fields(LedgerRecord) if f.name != "arrival")
_READ = {name: _reader(_HINTS[name]) for name in _WRITTEN}
