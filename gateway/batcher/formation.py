"""When a batch group waits, when it goes, and who may join it: the latency bound of micro-batching.

A group must never cost its members more than ``batching.max_added_ms``: the time they wait for
partners plus the decode time of the other answers (:mod:`gateway.batcher.latency`). Waiting is worth
it only when a partner is likely, so each group key keeps its recent arrivals:

- a request that finds no open group opens one only when, lately, most openers of this key got a
  partner; otherwise it goes at once (and still counts as an opener, so the estimate keeps learning);
- an open group waits for the next member twice the median recent gap between arrivals (a burst's
  tasks come milliseconds apart, so that median is a burst's), never past ``window_ms`` or the bound;
  an opener counts as partnered when the next arrival came within that wait.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from gateway.batcher.latency import quantile
from gateway.policy.batching import BatchingConfig

_GAPS = 128


@dataclass(slots=True)
class Arrivals:
    """The recent arrivals of one group key."""

    last: float | None = None
    opener: float | None = None
    """When the last opener arrived, while the window for its partner is still open."""
    partnered: float = 0.5
    """Moving share of openers that had a partner within the window."""
    gaps: deque[float] = field(default_factory=lambda: deque(maxlen=_GAPS))


@dataclass(slots=True)
class Formation:
    config: BatchingConfig
    alpha: float = 0.1
    _keys: dict[str, Arrivals] = field(default_factory=dict)

    def arrive(self, key: str, now: float) -> Arrivals:
        """Record an arrival: a gap if the previous one is recent, a partner for a waiting opener."""
        window = self.config.window_ms / 1000
        seen = self._keys.setdefault(key, Arrivals())
        if seen.last is not None and now - seen.last <= window:
            seen.gaps.append(now - seen.last)
        if seen.opener is not None:
            if now - seen.opener <= self.wait_s(key):
                seen.partnered += self.alpha * (1 - seen.partnered)
            else:
                seen.partnered -= self.alpha * seen.partnered
            seen.opener = None
        seen.last = now
        return seen

    def open(self, key: str, now: float) -> bool:
        """Whether a request that found no open group should wait for partners (it is now an opener)."""
        seen = self._keys.setdefault(key, Arrivals())
        seen.opener = now
        return seen.partnered >= self.config.min_partner_share

    def wait_s(self, key: str) -> float:
        """How long an open group waits for its next member after the last one joined."""
        window = self.config.window_ms / 1000
        gaps = self._keys.get(key, Arrivals()).gaps
        if len(gaps) < 8:
            return window
        return min(window, max(0.001, quantile(list(gaps), 0.5) * 2))

    def fits(self, waited_s: list[float], decode_s: list[float]) -> bool:
        """Whether every member's predicted added latency (waited so far + decode of the others)
        stays under ``max_added_ms``."""
        bound = self.config.max_added_ms / 1000
        return all(w + d <= bound for w, d in zip(waited_s, decode_s, strict=True))
