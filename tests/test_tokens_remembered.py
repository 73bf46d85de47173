"""A text that repeats on every request (an agent's system prompt) is estimated once, with the same
figure as a fresh estimate; long texts and stream prefixes are not kept."""

from __future__ import annotations

from gateway import tokens
from gateway.tokens import REMEMBERED_CHARS, estimate_text


def test_a_repeated_short_text_is_estimated_once(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    calls: list[str] = []
    real = tokens._estimate

    def counting(text: str, length: int | None) -> int:
        calls.append(text)
        return real(text, length)

    monkeypatch.setattr(tokens, "_estimate", counting)
    tokens._remembered.cache_clear()
    prompt = "You are a careful reviewer. " * 20
    first = [estimate_text("".join([prompt])) for _ in range(5)]  # a new str object each time, like a body
    assert first == [real(prompt, None)] * 5
    assert calls == [prompt], "estimated once, then remembered"


def test_long_texts_and_prefixes_are_estimated_each_time(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    calls: list[str] = []
    real = tokens._estimate
    monkeypatch.setattr(tokens, "_estimate", lambda t, n: calls.append(t) or real(t, n))
    tokens._remembered.cache_clear()
    long = "x " * REMEMBERED_CHARS
    assert estimate_text(long) == estimate_text(long) == real(long, None)
    assert estimate_text("abc", 3000) == estimate_text("abc", 3000) == real("abc", 3000)
    assert len(calls) == 4, "neither kept: a long text could hold memory, a prefix stands for a longer text"
