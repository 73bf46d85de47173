"""Cache keys: SHA-256 over a canonical form of everything that can change the answer.

Canonical means sorted keys, no insignificant whitespace and normalised numbers (``0`` and ``0.0`` are
one value), so two requests that mean the same thing share one entry whatever their JSON looks like.
Fields that cannot change the answer (streaming, usage reporting, end-user ids, metadata) stay out, so a
streamed and a non-streamed call share an entry: each protocol adapter says which fields count
(``answer_fields``); any field it does not leave out counts, so a new answer-changing parameter never makes
two different requests share an answer.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson


def normalise(value: Any) -> Any:
    """Numbers that are equal compare equal after this (1 == 1.0), recursively."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    return value


def canonical(endpoint: str, model: str, fields: dict[str, Any], scope: str) -> bytes:
    """The bytes that identify an answer: endpoint, model actually called, the answer-changing fields
    (the protocol's ``answer_fields``), scope."""
    document = {"endpoint": endpoint, "model": model, "scope": scope, "request": normalise(fields)}
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


def cache_key(endpoint: str, model: str, fields: dict[str, Any], scope: str) -> str:
    return hashlib.sha256(canonical(endpoint, model, fields, scope)).hexdigest()


def deterministic(body: dict[str, Any]) -> bool:
    """Temperature 0 or a fixed seed: the cases where caching cannot change what a caller would get."""
    return body.get("temperature") == 0 or body.get("seed") is not None
