"""What the admin API shows of a sprint period: per-agent and sprint-wide used, reserved, remaining, state.

Pure functions of the policy and a ledger snapshot, so the numbers an operator reads are the ones the
ledger enforces (limits include the operator's adjustments).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.budget.ledger import Account, Accounts, cap
from gateway.budget.sprints import Period
from gateway.policy.budget import SprintConfig


def agent_base(sprint: SprintConfig, agent: str, seats: list[str]) -> int:
    """The agent's budget before adjustment, as the ledger sees it."""
    share = sprint.share(agent)
    if isinstance(sprint.agents, int):
        return sprint.equal_share if agent in seats else sprint.unknown_share
    return sprint.unknown_share if share is None else share


def state(sprint: SprintConfig, used: int, limit: int, pause: bool = False) -> str:
    """``blocked`` at ``block_at``, ``paused`` (sprint-wide, P2/P3 refused), ``alert`` at ``alert_at``."""
    if used >= cap(limit, sprint.block_at):
        return "blocked"
    action = sprint.actions.pause_non_critical
    if pause and action.enabled and used >= cap(limit, action.at):
        return "paused"
    if used >= sprint.alert_at * limit:
        return "alert"
    return "ok"


def _line(sprint: SprintConfig, account: Account, limit: int, pause: bool = False) -> dict[str, Any]:
    return {
        "limit": limit,
        "used": account.used,
        "reserved": account.reserved,
        "saved": account.saved,
        "adjustment": account.adjust,
        "remaining": limit - account.used,
        "state": state(sprint, account.used, limit, pause),
    }


def describe(
    sprint: SprintConfig, period: Period | None, accounts: Accounts, paused: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The admin view of one sprint (``period`` None: not running now, nothing to show but the policy);
    an agent in ``paused`` (the runaway brake's pauses) carries its pause as ``brake``."""
    out: dict[str, Any] = {
        "id": sprint.id,
        "running": period is not None,
        "total_tokens": sprint.total_tokens,
        "alert_at": sprint.alert_at,
        "block_at": sprint.block_at,
    }
    if period is None:
        return out
    named = sprint.agents if isinstance(sprint.agents, list) else []
    names = [*named, *sorted(a for a in accounts.agents if a not in named)]
    agents = []
    for name in names:
        account = accounts.agents.get(name, Account())
        limit = agent_base(sprint, name, accounts.seats) + account.adjust
        line = {"agent": name, **_line(sprint, account, limit)}
        if paused and name in paused:
            line["brake"] = paused[name]
        agents.append(line)
    out["period"] = {
        "index": period.index,
        "start": period.start,
        "end": period.end,
        "resets_at": period.resets_at(),
    }
    out["sprint"] = _line(sprint, accounts.sprint, sprint.total_tokens + accounts.sprint.adjust, pause=True)
    out["agents"] = agents
    if isinstance(sprint.agents, int):
        out["seats"] = {"total": sprint.agents, "taken": accounts.seats}
    return out
