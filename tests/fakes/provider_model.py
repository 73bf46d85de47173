"""How a real provider's timing and prompt cache behave, for the fake upstream in the sprint benchmark.

Two things shape what a gateway can save without slowing its callers, and the plain fake has neither:

- **Decode time.** A provider streams a completion token by token, so an answer takes a fixed
  time to first token plus a time per completion token (:class:`DecodeLatency`). A batch of five answers
  takes as long as the five answers back to back, which is what makes batching cost latency.
- **Prefix caching** like OpenAI's (:class:`PrefixCache`): a prompt whose first 1,024 or more tokens
  were seen recently on the same engine bills that prefix as ``cached_tokens``, counted in 128-token steps.
  Requests are spread over a few engines; a ``prompt_cache_key`` sends every request with that key to
  the same engine, without one the engine is chosen at random, so a key makes warm hits likelier.

Tokens are the fake's (:func:`~tests.fakes.upstream_bodies.count_tokens`: four characters each), over the
messages' text joined in order, so two prompts share a cached prefix exactly when their text does.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .upstream_bodies import text_of

CHARS_PER_TOKEN = 4


@dataclass(frozen=True, slots=True)
class DecodeLatency:
    """Seconds to answer: ``base_s`` to the first token, then ``per_token_s`` per completion token."""

    base_s: float = 0.150
    per_token_s: float = 0.008

    def seconds(self, completion_tokens: int) -> float:
        return self.base_s + self.per_token_s * max(0, completion_tokens)


def prompt_text(messages: Any) -> str:
    """The prompt as one string, messages in order, so a shared leading context is a shared prefix."""
    if not isinstance(messages, list):
        return ""
    parts = []
    for message in messages:
        if isinstance(message, dict):
            parts.append(f"<|{message.get('role')}|>{text_of(message.get('content'))}")
    return "".join(parts)


@dataclass(slots=True)
class PrefixCache:
    """OpenAI-style prompt caching: ``cached_tokens`` for a repeated prefix of at least ``min_tokens``."""

    engines: int = 4
    min_tokens: int = 1024
    step: int = 128
    remembered: int = 256
    """Prompts each engine keeps (most recent first out), standing in for the cache's few-minute life."""
    seed: int = 0
    _seen: list[deque[str]] = field(init=False)
    _random: random.Random = field(init=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._seen = [deque(maxlen=self.remembered) for _ in range(self.engines)]
        self._random = random.Random(self.seed)

    def engine(self, key: str | None) -> int:
        if key:
            return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % self.engines
        return self._random.randrange(self.engines)

    def lookup(self, body: dict[str, Any]) -> int:
        """The cached prompt tokens of this request (0 below ``min_tokens``); remembers its prompt."""
        text = prompt_text(body.get("messages"))
        key = body.get("prompt_cache_key")
        with self._lock:
            seen = self._seen[self.engine(key if isinstance(key, str) else None)]
            longest = max((_common(text, other) for other in seen), default=0)
            seen.append(text)
        tokens = longest // CHARS_PER_TOKEN
        if tokens < self.min_tokens:
            return 0
        return tokens - (tokens - self.min_tokens) % self.step


def _common(a: str, b: str) -> int:
    """Length of the common prefix of ``a`` and ``b``."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo], a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo
