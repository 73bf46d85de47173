"""Cache keys: canonical (key order, whitespace and number spelling never matter) and complete (every
answer-changing field changes the key)."""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.cache import keys
from gateway.protocols import CHAT
from gateway.protocols.openai import IGNORED


def cache_key(endpoint: str, model: str, body: dict[str, Any], scope: str) -> str:
    """The key of a body, through the chat adapter's answer fields as the cache stage uses them."""
    return keys.cache_key(endpoint, model, CHAT.answer_fields(body), scope)


def canonical(endpoint: str, model: str, body: dict[str, Any], scope: str) -> bytes:
    return keys.canonical(endpoint, model, CHAT.answer_fields(body), scope)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-1000, 1000)
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
ANSWER_FIELDS = [
    "messages",
    "prompt",
    "input",
    "tools",
    "tool_choice",
    "response_format",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "reasoning_effort",
]
bodies = st.dictionaries(st.sampled_from(ANSWER_FIELDS), json_values, min_size=1, max_size=6)


def reorder(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: reorder(v, rng) for k, v in items}
    if isinstance(value, list):
        return [reorder(v, rng) for v in value]
    return value


@settings(max_examples=200)
@given(bodies, st.integers(0, 2**32))
def test_key_order_and_whitespace_never_matter(body: dict[str, Any], seed: int) -> None:
    shuffled = reorder(body, random.Random(seed))
    respaced = json.loads(json.dumps(shuffled, indent=3))
    key = cache_key("chat.completions", "m", body, "team:a")
    assert cache_key("chat.completions", "m", shuffled, "team:a") == key
    assert cache_key("chat.completions", "m", respaced, "team:a") == key


@settings(max_examples=200)
@given(bodies, st.sampled_from(ANSWER_FIELDS), json_values)
def test_changing_an_answer_field_changes_the_key(body: dict[str, Any], field: str, value: Any) -> None:
    changed = {**body, field: value}
    if canonical("e", "m", changed, "s") == canonical("e", "m", body, "s"):
        return  # the same value (after number normalisation) was drawn
    assert cache_key("e", "m", changed, "s") != cache_key("e", "m", body, "s")


@given(bodies, st.sampled_from(sorted(IGNORED)), json_values)
def test_ignored_fields_do_not_change_the_key(body: dict[str, Any], field: str, value: Any) -> None:
    assert cache_key("e", "m", {**body, field: value}, "s") == cache_key("e", "m", body, "s")


def test_numbers_are_normalised() -> None:
    assert cache_key("e", "m", {"temperature": 0}, "s") == cache_key("e", "m", {"temperature": 0.0}, "s")
    assert cache_key("e", "m", {"max_tokens": 10}, "s") == cache_key("e", "m", {"max_tokens": 1e1}, "s")
    assert cache_key("e", "m", {"temperature": 0.5}, "s") != cache_key("e", "m", {"temperature": 0.4}, "s")


def test_scope_model_endpoint_and_stream_flag() -> None:
    body = {"messages": [{"role": "user", "content": "x"}]}
    base = cache_key("chat.completions", "gpt-4o-mini", body, "team:a")
    assert cache_key("chat.completions", "gpt-4o-mini", body, "team:b") != base
    assert cache_key("chat.completions", "gpt-4.1", body, "team:a") != base
    assert cache_key("completions", "gpt-4o-mini", body, "team:a") != base
    streamed = {**body, "stream": True, "stream_options": {"include_usage": True}, "user": "u"}
    assert cache_key("chat.completions", "gpt-4o-mini", streamed, "team:a") == base
    assert cache_key("chat.completions", "gpt-4o-mini", {**body, "model": "whatever"}, "team:a") == base
