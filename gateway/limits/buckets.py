"""Which buckets a request takes from: every rule whose scope and match fit it, per resource."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.context import Request
from gateway.policy.limits import LimitRule, LimitsConfig

REQUESTS, TOKENS, INFLIGHT = "requests", "tokens", "inflight"


@dataclass(frozen=True, slots=True)
class Who:
    """The names a request is counted under."""

    key: str
    """The gateway key's SHA-256 in hex ("anonymous" in open mode)."""
    agent: str
    team: str
    model: str
    provider: str | None

    @classmethod
    def of(cls, request: Request, key: str, provider: str | None) -> Who:
        return cls(key, request.agent, request.team, request.requested_model, provider)

    def name(self, rule: LimitRule) -> str | None:
        value: str | None = getattr(self, rule.scope)
        if value is None or rule.match not in ("*", value):
            return None
        return value[:16] if rule.scope == "key" else value  # a key's bucket names a digest prefix only


@dataclass(frozen=True, slots=True)
class Need:
    """One bucket of one rule for this request."""

    resource: str
    scope: str
    name: str
    key: str
    capacity: int
    window_s: float


class Plans:
    """The buckets of each distinct ``Who``, worked out once (rules are fixed for the policy's life)."""

    MAX = 10_000
    """Distinct callers remembered; beyond it the memo starts again."""

    def __init__(self, config: LimitsConfig) -> None:
        self.config = config
        self._memo: dict[Who, tuple[Need, ...]] = {}

    def __call__(self, who: Who) -> tuple[Need, ...]:
        found = self._memo.get(who)
        if found is None:
            if len(self._memo) >= self.MAX:
                self._memo.clear()
            found = self._memo[who] = tuple(needs(self.config, who))
        return found


def needs(config: LimitsConfig, who: Who) -> list[Need]:
    out: list[Need] = []
    for rule in config.rules:
        name = who.name(rule)
        if name is None:
            continue
        base = f"{rule.scope}:{name}"
        for resource, capacity, window in (
            (REQUESTS, rule.rpm, rule.window_s),
            (TOKENS, rule.tpm, rule.window_s),
            (INFLIGHT, rule.concurrency, config.lease_s),
        ):
            if capacity is not None:
                key = f"{resource}:{base}:{window:g}"
                out.append(Need(resource, rule.scope, name, key, capacity, window))
    return out
