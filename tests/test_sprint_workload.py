"""The sprint benchmark's workload and fake provider: reproducible, the stated shape, OpenAI-like caching."""

from __future__ import annotations

import hashlib
import itertools
import json

from benchmarks.sprint.workload import (
    BOTCH_ONE_IN,
    SprintShape,
    answer_for,
    answer_tokens,
    generate,
    sprint_responder,
)
from tests.fakes.provider_model import DecodeLatency, PrefixCache

SYSTEM = "You are a careful engineer. " * 200  # ~1,350 tokens


def body(task: str, system: str = SYSTEM, key: str | None = None) -> dict[str, object]:
    out: dict[str, object] = {
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": task}]
    }
    if key:
        out["prompt_cache_key"] = key
    return out


def test_same_seed_same_sprint_other_seed_other_sprint() -> None:
    shape = SprintShape(requests=300, duration_s=10)
    first, again = generate(shape), generate(shape)
    assert [(r.at, r.task, r.agent) for r in first] == [(r.at, r.task, r.agent) for r in again]
    other = generate(SprintShape(seed=8, requests=300, duration_s=10))
    assert [r.task for r in other] != [r.task for r in first]


def test_the_sprint_has_the_stated_shape() -> None:
    sprint = generate(SprintShape(requests=1000, duration_s=40))
    assert len(sprint) == 1000 and len({r.agent for r in sprint}) == 12 and len({r.team for r in sprint}) == 2
    systems = {len(r.system) // 4 for r in sprint}
    assert min(systems) >= 1100 and max(systems) <= 1700, "shared system prompts of 1.1-1.6k tokens"
    kinds = {r.kind for r in sprint}
    assert {"new", "repeat", "ci", "retry"} <= kinds
    repeats = sum(r.kind != "new" for r in sprint) / len(sprint)
    assert 0.15 < repeats < 0.45
    assert all(r.at <= s.at for r, s in itertools.pairwise(sprint)), "in sending order"


def test_answers_are_deterministic_and_batch_replies_answer_each_task() -> None:
    task = "refactor task 1: x\n[answer: 40 tokens]"
    assert answer_for(task) == answer_for(task) and answer_tokens(task) == 40
    assert abs(len(answer_for(task)) / 4 - 40) <= 2
    prompts = (f"intro {i}\n\n### Task t1\n{task}\n\n### Task t2\nother" for i in range(100))
    clean = next(p for p in prompts if int(hashlib.sha256(p.encode()).hexdigest()[:8], 16) % BOTCH_ONE_IN > 1)
    reply = json.loads(sprint_responder({"messages": [{"role": "user", "content": clean}]}))
    assert reply == {"t1": answer_for(task), "t2": answer_for("other")}


def test_prefix_cache_needs_1024_tokens_counts_128_steps_and_follows_the_key() -> None:
    cache = PrefixCache(engines=4, seed=1)
    assert cache.lookup(body("first", key="k")) == 0, "nothing seen yet"
    cached = cache.lookup(body("second", key="k"))
    assert cached >= 1024 and (cached - 1024) % 128 == 0
    assert cache.lookup(body("third", system="Short.", key="k")) == 0, "under 1,024 tokens: not cached"
    fresh = PrefixCache(engines=4, seed=1)
    fresh.lookup(body("first", key="a"))
    other_engine = next(k for k in ("b", "c", "d", "e", "f", "g") if fresh.engine(k) != fresh.engine("a"))
    assert fresh.lookup(body("second", key=other_engine)) == 0, "another key's engine has a cold cache"


def test_decode_latency_grows_with_completion_tokens() -> None:
    decode = DecodeLatency(0.150, 0.008)
    assert decode.seconds(0) == 0.150 and abs(decode.seconds(100) - 0.950) < 1e-9
