"""What a batch costs its members in time: predicted answer lengths and the provider's decode time.

A provider writes a batch's answers one after another, so a member waits for the tokens of the answers
written before its own (all of them when the reply is read whole). Both figures are learned from the
calls the batcher makes:

- :class:`OutputHistory` predicts a member's completion tokens: its ``max_tokens`` when it has one (an
  upper bound the answer cannot pass), else the 90th percentile of recent answers of its task type and model,
  else the policy's prior.
- :class:`DecodeModel` learns seconds per completion token per model by least squares over recent calls
  (``elapsed = base + per_token * completion``), starting from the policy's prior.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

_WINDOW = 64
_MIN_SAMPLES = 8


def quantile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


@dataclass(slots=True)
class OutputHistory:
    """Recent completion tokens by (task type, model)."""

    prior_tokens: int
    share: float = 0.9
    """Quantile of the recent lengths used as the prediction (above the median: waits are not averaged)."""
    _seen: dict[tuple[str | None, str], deque[int]] = field(default_factory=dict)

    def record(self, task_type: str | None, model: str, completion_tokens: int) -> None:
        self._seen.setdefault((task_type, model), deque(maxlen=_WINDOW)).append(completion_tokens)

    def predict(self, task_type: str | None, model: str, max_tokens: int | None) -> int:
        recent = self._seen.get((task_type, model))
        learned = round(quantile(list(recent), self.share)) if recent and len(recent) >= 3 else None
        if isinstance(max_tokens, int) and max_tokens > 0:
            return max_tokens if learned is None else min(max_tokens, learned)
        return self.prior_tokens if learned is None else learned


@dataclass(slots=True)
class DecodeModel:
    """Seconds per completion token by model: ``prior_s`` until enough calls have been seen."""

    prior_s: float
    _samples: dict[str, deque[tuple[int, float]]] = field(default_factory=dict)

    def record(self, model: str, completion_tokens: int, elapsed_s: float) -> None:
        if completion_tokens > 0 and elapsed_s > 0:
            self._samples.setdefault(model, deque(maxlen=_WINDOW)).append((completion_tokens, elapsed_s))

    def per_token_s(self, model: str) -> float:
        samples = self._samples.get(model)
        if not samples or len(samples) < _MIN_SAMPLES:
            return self.prior_s
        n = len(samples)
        mean_x = sum(x for x, _ in samples) / n
        mean_y = sum(y for _, y in samples) / n
        var = sum((x - mean_x) ** 2 for x, _ in samples)
        if var <= 0:
            return self.prior_s
        slope = sum((x - mean_x) * (y - mean_y) for x, y in samples) / var
        return slope if slope > 0 else self.prior_s


def added_s(outputs: list[int], per_token_s: float, streamed: bool = False) -> list[float]:
    """Each member's decode wait beyond its own answer: the tokens written before its answer (streamed,
    shortest first) or every other answer's (read whole)."""
    if streamed:
        order = sorted(range(len(outputs)), key=lambda i: outputs[i])
        before, waits = 0, [0.0] * len(outputs)
        for i in order:
            waits[i] = before * per_token_s
            before += outputs[i]
        return waits
    total = sum(outputs)
    return [(total - own) * per_token_s for own in outputs]
