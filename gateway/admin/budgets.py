"""Token budgets: ``GET /admin/budgets`` (every sprint's accounts), ``POST /admin/budgets/{sprint}/reset``
(body ``{"agent": NAME}`` optional) and ``POST /admin/budgets/{sprint}/adjust`` (``{"tokens": N}``, N may be
negative, ``agent`` optional: the sprint total otherwise). Changes apply to the sprint's current period.
Agents paused by the runaway brake are listed under ``paused`` and marked ``brake`` in their sprint."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

import orjson
from aiohttp import web

from gateway.admin.agents import brake_of, paused_or_unavailable
from gateway.appkeys import BUDGET
from gateway.budget import BudgetManager
from gateway.budget.ledger import Accounts
from gateway.budget.manager import RETAIN_S
from gateway.budget.report import describe
from gateway.budget.sprints import Period
from gateway.errors import InvalidRequest, NotFound, Unavailable
from gateway.store import StoreError

T = TypeVar("T")
MAX_ADJUST = 10**15
"""Largest change one call makes: beyond any real budget, and well inside the integers the store's Lua
scripts count exactly (doubles, 2**53)."""


def _manager(request: web.Request) -> BudgetManager:
    return request.config_dict[BUDGET]


async def list_budgets(request: web.Request) -> web.Response:
    manager = _manager(request)
    paused = await paused_or_unavailable(brake_of(request))
    data = []
    for sprint in manager.config.sprints:
        period = manager.period(sprint)
        accounts = await _guarded(manager.ledger.snapshot(period.bucket)) if period else Accounts()
        data.append(describe(sprint, period, accounts, paused))
    return web.json_response({"object": "list", "data": data, "paused": paused})


async def reset_budget(request: web.Request) -> web.Response:
    manager, period = _running(request)
    await _guarded(manager.ledger.reset(period.bucket, _agent(await _body(request))))
    return await _view(manager, period)


async def adjust_budget(request: web.Request) -> web.Response:
    manager, period = _running(request)
    body = await _body(request)
    tokens = body.get("tokens")
    if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens == 0 or abs(tokens) > MAX_ADJUST:
        raise InvalidRequest(
            f"tokens must be a non-zero integer within ±{MAX_ADJUST:,} (negative lowers the limit).",
            param="tokens",
        )
    await _guarded(manager.ledger.adjust(period.bucket, _agent(body), tokens, period.expire_at(RETAIN_S)))
    return await _view(manager, period)


async def _view(manager: BudgetManager, period: Period) -> web.Response:
    accounts = await _guarded(manager.ledger.snapshot(period.bucket))
    return web.json_response(describe(period.sprint, period, accounts))


async def _guarded(operation: Awaitable[T]) -> T:
    try:
        return await operation
    except StoreError as exc:
        raise Unavailable(f"The budget store could not be reached: {exc}") from None


def _running(request: web.Request) -> tuple[BudgetManager, Period]:
    manager = _manager(request)
    name = request.match_info["sprint"]
    sprint = next((s for s in manager.config.sprints if s.id == name), None)
    if sprint is None:
        raise NotFound(f"No sprint '{name}' in the policy.", param="sprint")
    period = manager.period(sprint)
    if period is None:
        raise InvalidRequest(
            f"Sprint '{name}' is not running now.", param="sprint", code="sprint_not_running"
        )
    return manager, period


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        raise InvalidRequest("The body must be a JSON object.")
    return body


def _agent(body: dict[str, Any]) -> str | None:
    agent = body.get("agent")
    if agent is not None and (not isinstance(agent, str) or not agent):
        raise InvalidRequest("agent must be an agent name.", param="agent")
    return agent


ROUTES = [
    web.get("/budgets", list_budgets),
    web.post("/budgets/{sprint}/reset", reset_budget),
    web.post("/budgets/{sprint}/adjust", adjust_budget),
]
