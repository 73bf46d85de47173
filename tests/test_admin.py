"""The admin sub-app (``/admin``): the admin key before anything else, OpenAI-shaped errors, one record per
call from the parent app's middleware."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import REGISTRY

from gateway.admin import create_admin_app
from gateway.policy import Policy
from gateway.server import create_app
from tests.conftest import ADMIN_KEY, base_policy

Client = TestClient[web.Request, web.Application]
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
ADMIN_ROUTES = sorted(
    (route.method, route.resource.canonical)
    for route in create_admin_app().router.routes()
    if route.method not in ("*", "HEAD") and route.resource is not None
)
"""Every route the sub-app serves (its catch-all aside), so a route added later is covered too."""


@pytest.fixture
async def admin_client(aiohttp_client: Callable[..., Awaitable[Client]]) -> Client:
    sprint = {"id": "s1", "total_tokens": 1000, "agents": ["agent-1"]}
    policy = base_policy("http://127.0.0.1:9", budgets={"sprints": [sprint]})
    return await aiohttp_client(create_app(Policy.model_validate(policy)))


async def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["X-Request-Id"]
    error = (await response.json())["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return dict(error)


def test_the_sub_app_serves_the_admin_routes() -> None:
    assert ADMIN_ROUTES == [
        ("DELETE", "/cache"),
        ("GET", "/agents/paused"),
        ("GET", "/budgets"),
        ("GET", "/routing-log"),
        ("POST", "/agents/{agent}/resume"),
        ("POST", "/budgets/{sprint}/adjust"),
        ("POST", "/budgets/{sprint}/reset"),
    ]


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
async def test_every_admin_route_needs_the_admin_key(admin_client: Client, method: str, path: str) -> None:
    url = "/admin" + path.replace("{sprint}", "s1").replace("{agent}", "agent-1")
    missing = await error_of(await admin_client.request(method, url), 401)
    wrong = await error_of(
        await admin_client.request(method, url, headers={"Authorization": "Bearer x"}), 401
    )
    assert missing["code"] == wrong["code"] == "invalid_admin_key"
    response = await admin_client.request(method, url, headers=ADMIN, json={"tokens": 5})
    assert response.status == 200, await response.text()


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/admin"), ("GET", "/admin/"), ("GET", "/admin/whatever"), ("GET", "/admin/cache"),
     ("PUT", "/admin/budgets"), ("POST", "/admin/budgets/s1/nothing")],
)  # fmt: skip
async def test_unknown_admin_routes_ask_for_the_key_before_saying_404(
    admin_client: Client, method: str, path: str
) -> None:
    assert (await error_of(await admin_client.request(method, path), 401))["code"] == "invalid_admin_key"
    found = await error_of(await admin_client.request(method, path, headers=ADMIN), 404)
    assert found["code"] == "not_found"
    assert found["message"].startswith("Unknown admin route" if path != "/admin" else "Unknown route")


async def test_a_closed_admin_api_says_so(aiohttp_client: Callable[..., Awaitable[Client]]) -> None:
    policy = base_policy("http://127.0.0.1:9", server={"admin_key": ""})
    client = await aiohttp_client(create_app(Policy.model_validate(policy)))
    for path in ("/admin/budgets", "/admin/whatever"):
        error = await error_of(await client.get(path, headers=ADMIN), 401)
        assert error["code"] == "admin_disabled"


async def test_each_admin_call_is_counted_once(admin_client: Client) -> None:
    def answered(code: str) -> float:
        sample = REGISTRY.get_sample_value("gateway_requests_total", {"endpoint": "other", "code": code})
        return sample or 0.0

    before = {code: answered(code) for code in ("200", "400", "401", "404")}
    assert (await admin_client.get("/admin/budgets", headers=ADMIN)).status == 200
    assert (await admin_client.get("/admin/budgets")).status == 401
    assert (await admin_client.get("/admin/routing-log?limit=0", headers=ADMIN)).status == 400
    assert (await admin_client.get("/admin/nothing", headers=ADMIN)).status == 404
    assert {code: answered(code) - before[code] for code in before} == {
        "200": 1,
        "400": 1,
        "401": 1,
        "404": 1,
    }
