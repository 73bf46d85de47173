"""The typed keys (``web.AppKey``) under which the app holds its long-lived services.

A leaf module: at run time it imports only aiohttp (the services' types are for the type checker), so any
handler, the admin sub-app's included (through ``request.config_dict``), reads a service without
importing the module that builds the app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from gateway.budget import BudgetManager
    from gateway.cache import LLMCache
    from gateway.ledger import RequestLedger
    from gateway.pipeline import Pipeline
    from gateway.policy import Policy
    from gateway.router import RoutingLog
    from gateway.store import Store
    from gateway.telemetry import Telemetry

POLICY: web.AppKey[Policy] = web.AppKey("policy")
STORE: web.AppKey[Store] = web.AppKey("store")
PIPELINE: web.AppKey[Pipeline] = web.AppKey("pipeline")
CACHE: web.AppKey[LLMCache] = web.AppKey("cache")
ROUTING_LOG: web.AppKey[RoutingLog] = web.AppKey("routing_log")
BUDGET: web.AppKey[BudgetManager] = web.AppKey("budget")
LEDGER: web.AppKey[RequestLedger | None] = web.AppKey("ledger")
"""None when ``ledger.enabled`` is off."""
TELEMETRY: web.AppKey[Telemetry] = web.AppKey("telemetry")
