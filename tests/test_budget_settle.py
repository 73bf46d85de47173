"""Settling through store faults: a commit the store does not take is retried in the background until
it lands or the reservation would have expired anyway; a reserve whose answer was lost is released."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.budget.manager import BudgetManager
from gateway.budget.memory import MemoryLedger
from gateway.errors import GatewayError
from gateway.protocols import Usage
from gateway.store import StoreError
from tests.test_budget import accounts, manager, request, sprint


class FlakyLedger(MemoryLedger):
    """Fails the first ``failures`` commits (the store restarting), then takes them."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures, self.commits = failures, 0

    async def commit(self, bucket: str, charge: Any) -> Any:
        self.commits += 1
        if self.commits <= self.failures:
            raise StoreError("redis: ConnectionError")
        return await super().commit(bucket, charge)


class LostAnswerLedger(MemoryLedger):
    """Reserves, then loses the answer (a timeout after the script ran, a failover)."""

    async def reserve(self, bucket: str, ask: Any) -> Any:
        await super().reserve(bucket, ask)
        raise StoreError("redis: TimeoutError")


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BudgetManager, "retry_first_s", 0.001)
    monkeypatch.setattr(BudgetManager, "retry_max_s", 0.005)


async def test_a_failed_commit_is_retried_until_the_store_takes_it() -> None:
    config = sprint(id="flaky")
    ledger = FlakyLedger(failures=5)
    budget = manager(config, ledger=ledger)
    hold = await budget.reserve(request())
    assert hold is not None
    await budget.settle(hold, Usage(42, 0), hit=False)
    assert ledger.commits == 6
    line = (await accounts(budget, config))["sprint"]
    assert (line["used"], line["reserved"]) == (42, 0), "the tokens used are counted, the hold released"


async def test_retries_stop_once_the_reservation_would_have_expired() -> None:
    config = sprint(id="gone")
    ledger = FlakyLedger(failures=10**9)
    budget = manager(config, ledger=ledger, reservation_ttl_s=0.05)
    hold = await budget.reserve(request())
    assert hold is not None
    await budget.settle(hold, None, hit=False)  # returns: the ledger drops the hold by itself now
    assert ledger.commits > 1


async def test_a_reserve_whose_answer_was_lost_is_released() -> None:
    config = sprint(id="lost")
    budget = manager(config, ledger=LostAnswerLedger())
    with pytest.raises(GatewayError) as info:
        await budget.reserve(request())
    assert info.value.status == 503
    await budget.close()
    assert (await accounts(budget, config))["sprint"]["reserved"] == 0, "no reservation leaks"
