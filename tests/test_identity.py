"""Keys map to agents and teams; only trusted keys let a client name its agent; context headers are
parsed once and bad values are a 400."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.errors import Forbidden, InvalidRequest, Unauthorized
from gateway.identity import Authenticator, Identity, build_context, check_admin
from gateway.policy import ConfigError, Policy, load_policy
from gateway.policy.core import ApiKey, AuthConfig
from gateway.protocols import CHAT

TRUSTED = Identity(None, "t", trust_agent_header=True)


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
    assert a.identify({"Authorization": "Bearer gw-hashed"}) == Identity(None, "qa", False)
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
    assert a.identify({}) == Identity(None, "default", trust_agent_header=True)


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
    ctx = build_context("r1", CHAT, Identity(None, "backend", True), headers, {"user": "u"})
    assert (ctx.agent, ctx.team, ctx.task_type, ctx.priority) == ("dev-7", "backend", "refactor", "P1")
    assert (ctx.task_id, ctx.sprint, ctx.lines_estimate, ctx.batchable) == ("T-1001", "2026-W48", 42, True)
    assert ctx.cache_control == "no-cache"


def test_key_agent_wins_and_user_is_last_resort() -> None:
    keyed = build_context("r", CHAT, Identity("owner", "t"), {"X-Agent-Id": "other"}, {})
    assert keyed.agent == "owner"
    assert build_context("r", CHAT, TRUSTED, {}, {"user": "from-body"}).agent == "from-body"
    assert build_context("r", CHAT, TRUSTED, {}, {}).agent == "anonymous"


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
        build_context("r", CHAT, Identity(None, "t"), {header: value}, {})
    assert info.value.param == header
    assert info.value.status == 400


# --- which keys may name their agent ---------------------------------------------------------------------


def policy(keys: list[dict[str, object]], **sections: object) -> Policy:
    return Policy.model_validate({"auth": {"keys": keys}, **sections})


SPRINT = {"sprints": [{"id": "s1", "total_tokens": 1000, "agents": ["alice", "bob"]}]}


@pytest.mark.parametrize(
    ("sections", "trusted"),
    [
        ({}, True),
        ({"cache": {"scope": "team"}}, True),
        ({"cache": {"scope": "agent"}}, False),
        ({"cache": {"scope": "agent", "enabled": False}}, True),
        ({"budgets": SPRINT}, False),
    ],
)
def test_trust_default_follows_what_the_agent_decides(sections: dict[str, object], trusted: bool) -> None:
    keys: list[dict[str, object]] = [{"key": "gw-team", "team": "eng"}, {"key": "gw-bob", "agent": "bob"}]
    a = Authenticator.for_policy(policy(keys, **sections))
    assert a.identify({"Authorization": "Bearer gw-team"}).trust_agent_header is trusted
    assert a.identify({"Authorization": "Bearer gw-bob"}).trust_agent_header is False, "bound to its agent"


def test_trust_is_an_explicit_choice_per_key() -> None:
    keys: list[dict[str, object]] = [
        {"key": "gw-yes", "trust_agent_header": True},
        {"key": "gw-no", "trust_agent_header": False},
    ]
    for sections in ({}, {"budgets": SPRINT, "cache": {"scope": "agent"}}):
        a = Authenticator.for_policy(policy(keys, **sections))
        assert a.identify({"Authorization": "Bearer gw-yes"}).trust_agent_header is True
        assert a.identify({"Authorization": "Bearer gw-no"}).trust_agent_header is False
    with pytest.raises(ValidationError, match="trust_agent_header"):
        ApiKey(key="k", agent="bob", trust_agent_header=True)


def test_untrusted_key_cannot_name_another_agent() -> None:
    untrusted = Identity(None, "eng", trust_agent_header=False)
    with pytest.raises(Forbidden) as info:
        build_context("r", CHAT, untrusted, {"X-Agent-Id": "alice"}, {})
    assert (info.value.status, info.value.param) == (403, "X-Agent-Id")
    assert "trust_agent_header" in info.value.message
    assert build_context("r", CHAT, untrusted, {"X-Agent-Id": "anonymous"}, {}).agent == "anonymous"
    ctx = build_context("r", CHAT, untrusted, {}, {"user": "alice"})
    assert ctx.agent == "anonymous", "the body's user is passed on, never taken as the agent"


# --- agent and team names --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["eng/ml", "ml:bob", "has space", "{tag}", "bob%2F", "bob\n", "", "x" * 129])
def test_agent_names_are_restricted(name: str) -> None:
    if name != "bob\n":  # header values are stripped and carry no newline
        with pytest.raises(InvalidRequest) as info:
            build_context("r", CHAT, TRUSTED, {"X-Agent-Id": name}, {})
        assert (info.value.status, info.value.param) == (400, "X-Agent-Id")
    # The body's user is any string to OpenAI's API: one that is no valid name names no agent.
    assert build_context("r", CHAT, TRUSTED, {}, {"user": name}).agent == "anonymous"
    for field in ("agent", "team"):
        with pytest.raises(ValidationError, match=field):
            ApiKey(key="k", **{field: name})


def test_allowed_name_characters() -> None:
    name = "Dev_agent-1.bob@example.com"
    assert build_context("r", CHAT, TRUSTED, {"X-Agent-Id": name}, {}).agent == name
    assert ApiKey(key="k", agent=name, team="eng.ml-1").team == "eng.ml-1"


# --- keys that are not text ------------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["Authorization", "api-key", "x-api-key"])
def test_key_with_undecodable_bytes_is_a_401(header: str) -> None:
    # aiohttp decodes header bytes as UTF-8 with surrogateescape: b"\xff" arrives as "\udcff".
    value = ("Bearer " if header == "Authorization" else "") + "gw-\udcff\udcfe"
    with pytest.raises(Unauthorized):
        auth().identify({header: value})
    with pytest.raises(Unauthorized):
        check_admin({header: value}, "adm")


def test_a_bad_name_in_the_policy_names_its_key(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("auth:\n  keys:\n    - {key: gw-1, agent: ok}\n    - {key: gw-2, team: eng/ml}\n")
    with pytest.raises(ConfigError) as info:
        load_policy(path, env={})
    assert "auth.keys.1.team" in str(info.value) and "eng/ml" in str(info.value)
    assert "gw-2" not in str(info.value), "never the key itself"
