"""Splitting one batch answer into ordinary per-caller completions with exact usage shares."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.context import Usage


def apportion(total: int, weights: list[float]) -> list[int]:
    """Integers proportional to ``weights`` that add up to ``total`` exactly (largest remainder)."""
    if not weights:
        return []
    weight_sum = sum(weights)
    if weight_sum <= 0:
        weights, weight_sum = [1.0] * len(weights), float(len(weights))
    exact = [total * w / weight_sum for w in weights]
    shares = [int(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: exact[i] - shares[i], reverse=True)
    for i in by_remainder[: total - sum(shares)]:
        shares[i] += 1
    return shares


def member_answer(batch: dict[str, Any], member_id: str, text: str, usage: Usage) -> bytes:
    """A ``chat.completion`` as if the caller's request had been sent alone."""
    counts: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total,
    }
    if usage.cached_input_tokens:  # its share of the provider's prompt-cache reads
        counts["prompt_tokens_details"] = {"cached_tokens": usage.cached_input_tokens}
    answer = {
        "id": f"chatcmpl-{member_id}",
        "object": "chat.completion",
        "created": batch.get("created"),
        "model": batch.get("model"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": counts,
    }
    if batch.get("system_fingerprint"):
        answer["system_fingerprint"] = batch["system_fingerprint"]
    return orjson.dumps(answer)
