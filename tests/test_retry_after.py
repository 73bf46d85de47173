"""``Retry-After`` in both of its forms (RFC 9110): delay-seconds and an HTTP date."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from gateway.context import Call
from gateway.policy.core import ProviderConfig, RetryConfig
from gateway.providers import Provider, ProviderRequest, UpstreamReply
from gateway.upstream import Upstream, _retry_after


def http_date(seconds_from_now: float) -> str:
    return format_datetime(datetime.now(UTC) + timedelta(seconds=seconds_from_now), usegmt=True)


def limited(retry_after: str) -> UpstreamReply:
    return UpstreamReply(429, {"retry-after": retry_after}, body=b'{"error": {"message": "slow down"}}')


def test_seconds_and_http_dates_are_both_understood() -> None:
    assert _retry_after(limited("2.5")) == 2.5
    in_a_minute = _retry_after(limited(http_date(60)))
    assert in_a_minute is not None and 55 <= in_a_minute <= 60
    assert _retry_after(limited(http_date(-60))) == 0.0  # already past: no wait
    assert _retry_after(limited("Wed, 21 Oct 2015 07:28:00 -0000")) == 0.0  # numeric zone, long past
    assert _retry_after(limited("soon")) is None
    assert _retry_after(UpstreamReply(429)) is None


class Scripted(Provider):
    """Answers with the given replies in order and counts the calls."""

    def __init__(self, *replies: UpstreamReply) -> None:
        retry = RetryConfig(attempts=3, backoff_base_s=0, backoff_max_s=0, deadline_s=5)
        super().__init__("scripted", ProviderConfig(retry=retry))
        self.replies = list(replies)
        self.calls = 0

    async def send(self, request: ProviderRequest) -> UpstreamReply:
        self.calls += 1
        return self.replies.pop(0)


async def test_a_date_beyond_the_deadline_is_not_waited_for() -> None:
    provider = Scripted(*(limited(http_date(3600)) for _ in range(3)))
    call = Call("req-1", False, "chat/completions", {}, b"{}")
    outcome = await Upstream()._attempts(provider, call, b"{}")
    assert isinstance(outcome, UpstreamReply) and outcome.status == 429
    assert provider.calls == 1  # the provider said "in an hour": no retry within a 5 s deadline
