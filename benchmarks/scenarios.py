"""The scenario registry: a scenario is a name, policy overrides, a workload and concurrency levels.

To add one, append a :class:`Scenario` to ``_DEFINED``. ``policy`` is deep-merged over the policy the
harness generates (fake upstream provider, logging level, store), so a scenario states only the sections
it is about. ``requires`` names the policy sections without which the scenario would measure something
else; it is unavailable on a gateway that lacks them. Overrides of other sections the gateway does not
know are dropped (turning off a stage that does not exist changes nothing).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.policy import Policy

from .gateway_policy import PROVIDER, UPSTREAM, shipped_models, shipped_section
from .workload import BASE_HEADERS, UNIQUE, RequestTemplate, Workload, chat_body, responses_body

DEFAULT_CONCURRENCY = (1, 32)
CHAT_PATH = "/v1/chat/completions"
RESPONSES_PATH = "/v1/responses"
CACHE_OFF: Mapping[str, Any] = {"cache": {"enabled": False}}

# A system prompt of typical agent size (~0.5 KB), so parsing and relaying costs are not flattered.
SYSTEM_PROMPT = (
    "You are a senior software engineer working in a multi-agent coding team. Follow the repository's "
    "style guide, keep functions small and typed, write docstrings that explain why, and never invent "
    "APIs. Answer with a unified diff when code changes, otherwise with a short plain-text explanation. "
    "If the task is ambiguous, state the assumption you made in one sentence before the answer."
)
AGENTS = ("dev-agent-1", "dev-agent-2", "qa-agent-1", "arch-agent-1")


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    workload: Workload
    concurrency: tuple[int, ...] = DEFAULT_CONCURRENCY
    policy: Mapping[str, Any] = field(default_factory=dict)
    """Deep-merged over the generated gateway policy."""
    requires: tuple[str, ...] = ()
    """Policy sections the scenario is about."""
    compare_litellm: bool = False
    """True only where the LiteLLM proxy, as the harness configures it, does the same work."""

    def missing(self) -> list[str]:
        return [section for section in self.requires if section not in Policy.model_fields]

    def policy_overrides(self) -> dict[str, Any]:
        return {k: v for k, v in self.policy.items() if k in Policy.model_fields or k in self.requires}


def _headers(**extra: str) -> dict[str, str]:
    return {**BASE_HEADERS, **{name.replace("_", "-"): value for name, value in extra.items()}}


def _unique_chat(stream: bool) -> Workload:
    body = chat_body(f"Task {UNIQUE}: rename the variable tmp to total.", system=SYSTEM_PROMPT, stream=stream)
    return Workload(CHAT_PATH, (RequestTemplate(body),), b"data: [DONE]" if stream else b"")


MESSAGES_PATH = "/v1/messages"


def _unique_messages(stream: bool) -> Workload:
    """As ``_unique_chat`` in Anthropic's Messages shape (system prompt apart, max_tokens required)."""
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "system": SYSTEM_PROMPT,
        "messages": [{"role": "user", "content": f"Task {UNIQUE}: rename the variable tmp to total."}],
        **({"stream": True} if stream else {}),
    }
    headers = _headers(anthropic_version="2023-06-01")
    done = b"event: message_stop" if stream else b""
    return Workload(MESSAGES_PATH, (RequestTemplate(json.dumps(body), headers),), done)


def _unique_responses(stream: bool) -> Workload:
    body = responses_body(
        f"Task {UNIQUE}: rename the variable tmp to total.", instructions=SYSTEM_PROMPT, stream=stream
    )
    return Workload(RESPONSES_PATH, (RequestTemplate(body),), b"response.completed" if stream else b"")


def _mixed_sprint() -> Workload:
    """Five agents of different task types and priorities; half their prompts repeat (cache), all use
    the ``auto`` alias (routing)."""
    roles = (
        ("dev-agent-1", "refactor", "P2"),
        ("dev-agent-2", "test", "P3"),
        ("qa-agent-1", "qa", "P1"),
        ("arch-agent-1", "architecture", "P0"),
        ("docs-agent-1", "creative", "P2"),
    )
    templates = []
    for i, (agent, task, priority) in enumerate(roles):
        headers = _headers(X_Agent_Id=agent, X_Task_Type=task, X_Priority=priority)
        repeated = f"{task}: summarise the conventions of module {i}."
        fresh = f"{task} task {UNIQUE}: review the latest diff of module {i}."
        for text in (repeated, fresh):
            templates.append(RequestTemplate(chat_body(text, system=SYSTEM_PROMPT, model="auto"), headers))
    return Workload(CHAT_PATH, tuple(templates))


def _small_tasks(**headers: str) -> Workload:
    """Small unique refactor tasks from four agents sharing one long (~2 KB) system prompt."""
    system = SYSTEM_PROMPT * 4
    templates = tuple(
        RequestTemplate(
            chat_body(
                f"Refactor task {UNIQUE}: extract the loop body of parse_rows_{i} into a helper.",
                system=system,
            ),
            _headers(X_Agent_Id=agent, X_Task_Type="refactor", X_Lines_Estimate="40", **headers),
        )
        for i, agent in enumerate(AGENTS)
    )
    return Workload(CHAT_PATH, templates)


_DEFINED = (
    Scenario(
        "unique",
        "chat completions, every body different, cache off, JSON answer",
        _unique_chat(stream=False),
        policy=CACHE_OFF,
        compare_litellm=True,
    ),
    Scenario(
        "traced",
        "as unique with OpenTelemetry traces on: two spans per request, exported over OTLP/HTTP to the "
        "fake upstream (which answers 404; the export is the cost measured)",
        _unique_chat(stream=False),
        policy={**CACHE_OFF, "telemetry": {"otlp": {"endpoint": f"{UPSTREAM}/v1/traces"}}},
        requires=("telemetry",),
    ),
    Scenario(
        "stream",
        "as unique with stream: true, SSE relayed; latency is time to the last byte",
        _unique_chat(stream=True),
        policy=CACHE_OFF,
        compare_litellm=True,
    ),
    Scenario(
        "messages",
        "as unique in the Anthropic Messages API (/v1/messages to a type: anthropic provider)",
        _unique_messages(stream=False),
        policy=CACHE_OFF,
    ),
    Scenario(
        "messages-stream",
        "as stream in the Anthropic Messages API: its event sequence relayed event by event",
        _unique_messages(stream=True),
        policy=CACHE_OFF,
    ),
    Scenario(
        "responses",
        "as unique on the Responses API (/v1/responses): instructions and an input item, JSON answer",
        _unique_responses(stream=False),
        policy=CACHE_OFF,
    ),
    Scenario(
        "responses-stream",
        "as responses with stream: true, the typed events relayed; latency is time to the last byte",
        _unique_responses(stream=True),
        policy=CACHE_OFF,
    ),
    Scenario(
        "cache-miss",
        "as unique with the cache on: a lookup and a store per request, memory fills",
        _unique_chat(stream=False),
        policy={"cache": {"enabled": True}},
        requires=("cache",),
    ),
    Scenario(
        "cache-hit",
        "one identical body repeated, cache on: every measured request is a hit",
        Workload(CHAT_PATH, (RequestTemplate(chat_body("Say hi.", system=SYSTEM_PROMPT)),)),
        policy={"cache": {"enabled": True}},
        requires=("cache",),
    ),
    Scenario(
        "mixed-sprint",
        "five agents (X-Agent-Id, X-Task-Type, X-Priority) asking for model auto, "
        "half of the prompts repeated: routing and cache together",
        _mixed_sprint(),
        policy={
            "models": shipped_models(PROVIDER),
            "routing": shipped_section("routing") or {},
            "cache": {"enabled": True},
            "batching": {"enabled": False},
        },
        requires=("cache", "routing"),
    ),
    Scenario(
        "batch",
        "small refactor tasks (X-Batchable: true) sharing a long system prompt: "
        "micro-batching; upstream requests show the grouping",
        _small_tasks(X_Batchable="true"),
        policy={**CACHE_OFF, "batching": {"enabled": True}},
        requires=("batching",),
    ),
    Scenario(
        "batch-off",
        "the same small refactor tasks with batching off: the baseline for tokens and latency",
        _small_tasks(X_Batchable="true"),
        policy={**CACHE_OFF, "batching": {"enabled": False}},
        requires=("batching",),
    ),
    Scenario(
        "budget",
        "unique bodies from four agents charged to a sprint too large to run out: "
        "the cost of reserving and committing tokens",
        _small_tasks(X_Batchable="false"),
        policy={
            **CACHE_OFF,
            "budgets": {"sprints": [{"id": "bench", "total_tokens": 10**12, "agents": list(AGENTS)}]},
        },
        requires=("budgets",),
    ),
)


def _limits(count: int) -> dict[str, Any]:
    """``count`` rate-limit rules (0, 1 or 5) too large to refuse anything, the brake off: the cost of
    consuming and settling tickets alone (on Redis with ``--workers`` > 1)."""
    scopes = ("agent", "key", "team", "model", "provider")
    rules = [{"scope": scope, "rpm": 10**8, "tpm": 10**12} for scope in scopes[:count]]
    return {**CACHE_OFF, "limits": {"rules": rules, "brake": {"enabled": False}}}


_DEFINED += tuple(
    Scenario(
        f"limits-{count}",
        f"unique bodies from four agents, {count} rate-limit rule(s) (rpm and tpm) that never refuse"
        + (": the baseline" if not count else ""),
        _small_tasks(X_Batchable="false"),
        policy=_limits(count),
        requires=("limits",),
    )
    for count in (0, 1, 5)
)
SCENARIOS: dict[str, Scenario] = {scenario.name: scenario for scenario in _DEFINED}


class UnknownScenario(ValueError):
    """A scenario that is not defined, or needs policy sections this gateway does not have."""


def get_scenario(name: str) -> Scenario:
    scenario = SCENARIOS.get(name)
    if scenario is None:
        raise UnknownScenario(f"unknown scenario '{name}' (known: {', '.join(SCENARIOS)})")
    missing = scenario.missing()
    if missing:
        raise UnknownScenario(
            f"scenario '{name}' needs the policy section(s) {', '.join(missing)}, "
            "which this gateway does not have"
        )
    return scenario


def available() -> list[Scenario]:
    return [scenario for scenario in _DEFINED if not scenario.missing()]
