"""The admin API (``/admin/*``, admin key required): one module per concern, each adding its routes here."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

from aiohttp import web

# Each module exposes ``routes(app) -> list[web.RouteDef]``; add a module name to serve its routes.
MODULES: tuple[str, ...] = ("cache", "routing", "budgets")


def register(app: web.Application) -> None:
    """Add every admin module's routes (before the ``/admin/*`` catch-all, which answers 404)."""
    for name in MODULES:
        module = import_module(f"gateway.admin.{name}")
        routes: Callable[[web.Application], list[web.RouteDef]] = module.routes
        app.router.add_routes(routes(app))
