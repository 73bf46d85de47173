"""The prompt_cache_key the gateway sends: stable per scope and shared prefix, never the caller's text."""

from __future__ import annotations

from typing import Any

from gateway.policy.cache import CacheConfig
from gateway.prompt_cache import prompt_cache_key, with_prompt_cache_key

LONG = "Follow the style guide and keep functions small. " * 120  # ~1,500 tokens


def chat(system: str, task: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": "m",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": task}],
        **extra,
    }


def test_same_prefix_same_scope_same_key_whatever_the_task() -> None:
    a = prompt_cache_key("chat.completions", chat(LONG, "rename x"), "team:alpha")
    b = prompt_cache_key("chat.completions", chat(LONG, "inline y"), "team:alpha")
    assert a is not None and a == b
    assert "alpha" not in a and "style" not in a, "a hash, naming neither scope nor prompt"


def test_other_scope_or_prefix_other_key() -> None:
    base = prompt_cache_key("chat.completions", chat(LONG, "t"), "team:alpha")
    assert prompt_cache_key("chat.completions", chat(LONG, "t"), "team:beta") != base
    assert prompt_cache_key("chat.completions", chat(LONG + "!", "t"), "team:alpha") != base


def test_short_prefix_gets_no_key() -> None:
    assert prompt_cache_key("chat.completions", chat("Be brief.", "t"), "team:alpha") is None
    assert (
        prompt_cache_key("chat.completions", {"messages": [{"role": "user", "content": LONG}]}, "s") is None
    )


def test_policy_provider_and_callers_key_respected() -> None:
    body = chat(LONG, "t")
    on = CacheConfig()
    assert with_prompt_cache_key(on, "openai", "chat.completions", body, "s")["prompt_cache_key"]
    assert "prompt_cache_key" not in body, "the caller's body is not modified"
    assert (
        with_prompt_cache_key(CacheConfig(prompt_cache_key=False), "openai", "chat.completions", body, "s")
        is body
    )
    assert with_prompt_cache_key(on, "anthropic", "chat.completions", body, "s") is body
    own = chat(LONG, "t", prompt_cache_key="mine")
    assert with_prompt_cache_key(on, "openai", "chat.completions", own, "s")["prompt_cache_key"] == "mine"


def test_responses_instructions_are_the_prefix() -> None:
    a = prompt_cache_key("responses", {"instructions": LONG, "input": "a"}, "s")
    b = prompt_cache_key("responses", {"instructions": LONG, "input": "b"}, "s")
    assert a is not None and a == b
