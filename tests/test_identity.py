"""Keys map to agents and teams; context headers are parsed once and bad values are a 400."""

from __future__ import annotations

import hashlib

import pytest

from gateway.errors import InvalidRequest, Unauthorized
from gateway.identity import Authenticator, Identity, build_context, check_admin
from gateway.policy.core import ApiKey, AuthConfig


def auth() -> Authenticator:
    hashed = hashlib.sha256(b"gw-hashed").hexdigest()
    return Authenticator(
        AuthConfig(
            keys=[
                ApiKey(key="gw-plain", agent="agent-1", team="backend"),
                ApiKey(key_sha256=hashed, team="qa"),
            ]
        )
    )


def test_plain_and_hashed_keys() -> None:
    a = auth()
    assert a.identify({"Authorization": "Bearer gw-plain"}) == Identity("agent-1", "backend")
    assert a.identify({"Authorization": "Bearer gw-hashed"}) == Identity(None, "qa")
    assert a.identify({"api-key": "gw-plain"}) == Identity("agent-1", "backend")


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic gw-plain"}, {"Authorization": ""}],
)
def test_missing_or_wrong_key(headers: dict[str, str]) -> None:
    with pytest.raises(Unauthorized):
        auth().identify(headers)


def test_open_mode_accepts_anything() -> None:
    a = Authenticator(AuthConfig())
    assert a.open_mode
    assert a.identify({}) == Identity(None, "default")


def test_admin_key() -> None:
    check_admin({"Authorization": "Bearer adm"}, "adm")
    for headers, key in (
        ({"Authorization": "Bearer x"}, "adm"),
        ({}, "adm"),
        ({"Authorization": "Bearer a"}, ""),
    ):
        with pytest.raises(Unauthorized):
            check_admin(headers, key)


def test_context_headers_parsed() -> None:
    headers = {
        "X-Agent-Id": "dev-7",
        "X-Task-Type": "Refactor",
        "X-Priority": "p1",
        "X-Task-Id": "T-1001",
        "X-Sprint": "2026-W48",
        "X-Lines-Estimate": "42",
        "X-Batchable": "yes",
        "Cache-Control": "no-cache",
    }
    ctx = build_context("r1", "chat.completions", Identity(None, "backend"), headers, {"user": "u"})
    assert (ctx.agent, ctx.team, ctx.task_type, ctx.priority) == ("dev-7", "backend", "refactor", "P1")
    assert (ctx.task_id, ctx.sprint, ctx.lines_estimate, ctx.batchable) == ("T-1001", "2026-W48", 42, True)
    assert ctx.cache_control == "no-cache"


def test_key_agent_wins_and_user_is_last_resort() -> None:
    keyed = build_context("r", "e", Identity("owner", "t"), {"X-Agent-Id": "other"}, {})
    assert keyed.agent == "owner"
    assert build_context("r", "e", Identity(None, "t"), {}, {"user": "from-body"}).agent == "from-body"
    assert build_context("r", "e", Identity(None, "t"), {}, {}).agent == "anonymous"


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("X-Priority", "P9"),
        ("X-Priority", "high"),
        ("X-Lines-Estimate", "-3"),
        ("X-Lines-Estimate", "many"),
        ("X-Batchable", "perhaps"),
        ("X-Task-Type", "has space"),
        ("X-Agent-Id", "x" * 200),
        ("X-Sprint", "bad\tvalue"),
    ],
)
def test_bad_header_values(header: str, value: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        build_context("r", "e", Identity(None, "t"), {header: value}, {})
    assert info.value.param == header
    assert info.value.status == 400


# --- keys that are not text ------------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["Authorization", "api-key", "x-api-key"])
def test_key_with_undecodable_bytes_is_a_401(header: str) -> None:
    # aiohttp decodes header bytes as UTF-8 with surrogateescape: b"\xff" arrives as "\udcff".
    value = ("Bearer " if header == "Authorization" else "") + "gw-\udcff\udcfe"
    with pytest.raises(Unauthorized):
        auth().identify({header: value})
    with pytest.raises(Unauthorized):
        check_admin({header: value}, "adm")
