"""Cache scopes: one (team, agent) pair, one scope; names cannot forge the separators of another."""

from __future__ import annotations

import itertools

import pytest

from gateway.cache.llmcache import scope_for
from gateway.policy.cache import CacheConfig

AGENT = CacheConfig(scope="agent")
TEAM = CacheConfig(scope="team")
# Names a client or an old policy could bring: every split of "eng/ml/bob" and of "a:b:c".
PAIRS = [("eng/ml", "bob"), ("eng", "ml/bob"), ("eng/ml/bob", ""), ("a:b", "c"), ("a", "b:c"), ("a%2Fb", "c")]


def test_valid_names_read_as_themselves() -> None:
    assert scope_for(AGENT, "backend", "dev-1.bob@example.com") == "agent:backend/dev-1.bob@example.com"
    assert scope_for(TEAM, "backend", "dev-1") == "team:backend"
    assert scope_for(CacheConfig(scope="global"), "backend", "dev-1") == "global"


def test_different_pairs_never_share_an_agent_scope() -> None:
    scopes = {pair: scope_for(AGENT, *pair) for pair in PAIRS}
    for (a, scope_a), (b, scope_b) in itertools.combinations(scopes.items(), 2):
        assert scope_a != scope_b, (a, b)


@pytest.mark.parametrize(("team", "agent"), PAIRS)
def test_names_add_no_separator(team: str, agent: str) -> None:
    kind, rest = scope_for(AGENT, team, agent).split(":", 1)
    assert kind == "agent" and ":" not in rest and rest.count("/") == 1
    assert ":" not in scope_for(TEAM, team, agent).removeprefix("team:")
    assert not {"{", "}"} & set(scope_for(AGENT, "{tag}", "x")), "no Redis Cluster hash tag of its own"
