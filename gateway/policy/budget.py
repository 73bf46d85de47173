"""Schema of the ``budgets`` policy section: sprints with a token total, per-agent shares and actions.

A sprint's tokens are a limited energy shared by its agents; the operator is warned at
``alert_at``, new work is blocked at ``block_at``, and the gateway reacts before that (cheaper models,
pausing non-critical work, lending unused budget to critical work). Everything is checked at load time
(:func:`check_budgets`), so a typo is a start-up error naming the key.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.policy.core import NAME_PATTERN, NAME_RULE, Section
from gateway.policy.loader import ConfigError

Priority = Literal["P0", "P1", "P2", "P3"]
_SPRINT_ID = r"^[A-Za-z0-9_.\-]{1,64}$"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class PauseAction(Section):
    """Pause non-critical work: refuse P2/P3 requests with a 429 ``budget_paused`` past ``at``."""

    enabled: bool = False
    """Turns the pause on for this sprint."""
    at: float = Field(0.9, gt=0, le=2)
    """Sprint-wide fraction used past which P2/P3 requests are refused while P0/P1 go on."""


class BudgetActions(Section):
    """What the gateway does as a budget runs low, each switchable per sprint."""

    downgrade: bool = True
    """Once the agent (or the sprint) has used ``alert_at`` of its budget, the router picks one tier
    cheaper for the requests it routes, never below ``routing.downgrade_floor``."""
    pause_non_critical: PauseAction = PauseAction()
    """Past a share of the sprint's budget, P2/P3 requests are refused while P0/P1 go on."""
    redistribute: bool = False
    """An agent at its limit may borrow budget other agents have not used, for P0/P1 requests only."""


class WebhookConfig(Section):
    """Where budget alerts are POSTed, from a background task (never on the request path)."""

    url: str = ""
    """POSTed one JSON event per threshold crossing; empty: no webhook."""
    attempts: int = Field(3, ge=1, le=10)
    """Tries per event, the first included."""
    timeout_s: float = Field(5.0, gt=0)
    """Longest wait for one try."""
    backoff_s: float = Field(0.5, ge=0)
    """Wait before the second try; it doubles at each try after that."""
    headers: dict[str, str] = {}
    """Extra headers of every POST (e.g. an ``Authorization`` the receiver expects)."""


class SprintConfig(Section):
    """A sprint: a period, a token total for it, and the agents that share it."""

    id: str = Field(pattern=_SPRINT_ID)
    """The sprint's name (``X-Sprint``, metrics, admin API): letters, digits and ``_ . -``."""
    start: datetime | None = None
    """When it starts (UTC unless the time says otherwise); unset: it has always run."""
    end: datetime | None = None
    """When it ends; unset: it never ends. Not allowed with ``every``."""
    every: timedelta | None = None
    """A recurring sprint: periods of this length from ``start`` (``14d``, ``12h``, ``30m``, ISO 8601, or
    seconds), each with a whole budget. Needs ``start``, excludes ``end``."""
    total_tokens: int = Field(ge=1)
    """The sprint's budget per period, in provider tokens (prompt + completion)."""
    agents: list[str] | int = Field(0)
    """Agent names, or a count (the first N distinct agents seen in a period take the seats)."""
    per_agent: dict[str, int] = {}
    """Explicit budgets; the other agents split what is left equally."""
    alert_at: float = Field(0.8, gt=0, le=2)
    """Share of a budget used at which an alert is raised and the ``downgrade`` action starts."""
    block_at: float = Field(1.0, gt=0, le=2)
    """Share of a budget at which new requests are refused (429); at least ``alert_at``."""
    low_remaining: float = Field(0.1, ge=0, lt=1)
    """Alert once when the sprint's remaining budget falls under this fraction."""
    actions: BudgetActions = BudgetActions()
    """What the gateway does as the budget runs low."""
    unknown_agents: Literal["refuse", "share"] = "refuse"
    """Agents not in the sprint: refused (403), or given ``unknown_agent_tokens`` each."""
    unknown_agent_tokens: int | None = Field(None, ge=1)
    """Budget of each agent not in the sprint under ``share``; default: the equal share."""

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value

    @field_validator("every", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        if isinstance(value, str) and (match := _DURATION.match(value)):
            return float(match.group(1)) * _UNITS[match.group(2)]
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SprintConfig:
        if self.alert_at > self.block_at:
            raise ValueError(f"alert_at ({self.alert_at}) must not exceed block_at ({self.block_at})")
        if self.every is not None:
            if self.start is None:
                raise ValueError("a recurring sprint ('every') needs a 'start'")
            if self.end is not None:
                raise ValueError("give either 'end' or 'every', not both")
            if self.every.total_seconds() <= 0:
                raise ValueError("'every' must be a positive duration")
        if self.start and self.end and self.end <= self.start:
            raise ValueError("'end' must be after 'start'")
        if isinstance(self.agents, int) and not self.agents:
            raise ValueError("'agents' must list agent names or give their number (at least 1)")
        return self

    @property
    def agent_count(self) -> int:
        return self.agents if isinstance(self.agents, int) else len(self.agents)

    def share(self, agent: str) -> int | None:
        """The agent's budget in tokens, or None when the agent is not one of the sprint's named agents."""
        if agent in self.per_agent:
            return self.per_agent[agent]
        if isinstance(self.agents, list) and agent not in self.agents:
            return None
        return self.equal_share

    @property
    def equal_share(self) -> int:
        """What each agent without an explicit budget gets: the rest of the total, split equally."""
        others = self.agent_count - len(self.per_agent)
        return (self.total_tokens - sum(self.per_agent.values())) // others if others > 0 else 0

    @property
    def unknown_share(self) -> int:
        """Budget of an agent outside the sprint (0: refused)."""
        if self.unknown_agents == "refuse":
            return 0
        return self.unknown_agent_tokens or self.total_tokens // self.agent_count


class BudgetConfig(Section):
    """Token budgets per sprint, enforced atomically across every worker and replica sharing the store."""

    sprints: list[SprintConfig] = []
    """Empty: no budget is enforced (the stage costs nothing)."""
    default_max_tokens: int = Field(4096, ge=1)
    """Completion tokens reserved when a request sets no ``max_tokens`` / ``max_completion_tokens``."""
    reservation_ttl_s: float = Field(1200.0, gt=0)
    """A reservation not committed within this time (its gateway died) is dropped; keep it above your
    longest request."""
    default_priority: Priority = "P2"
    """The priority of a request without ``X-Priority``."""
    cache_read_weight: float = Field(1.0, ge=0, le=1)
    """How much a prompt token read from the provider's prompt cache counts against a budget (Anthropic's
    ``cache_read_input_tokens``, OpenAI's ``cached_tokens``): 1 counts every token the provider
    processed; 0.1 charges them at Anthropic's price ratio. Cache writes always count fully."""
    on_store_error: Literal["refuse", "allow"] = "refuse"
    """The store cannot be reached: refuse budgeted requests (503) or let them through unaccounted."""
    webhook: WebhookConfig = WebhookConfig()
    """Alert webhook."""


def check_budgets(config: BudgetConfig, file: str) -> None:
    """Names a sprint uses must mean one thing; raises :class:`ConfigError` naming the key."""
    seen: set[str] = set()
    for i, sprint in enumerate(config.sprints):
        path = f"budgets.sprints[{i}]"
        if sprint.id in seen:
            raise ConfigError(file, f"{path}.id", f"sprint '{sprint.id}' is declared twice")
        seen.add(sprint.id)
        if isinstance(sprint.agents, list):
            for j, agent in enumerate(sprint.agents):
                if sprint.agents.index(agent) != j:
                    raise ConfigError(file, f"{path}.agents[{j}]", f"'{agent}' appears twice")
                if not re.fullmatch(NAME_PATTERN, agent):
                    raise ConfigError(
                        file, f"{path}.agents[{j}]", f"agent names are {NAME_RULE} (got '{agent}')"
                    )
        for agent, tokens in sprint.per_agent.items():
            if not isinstance(sprint.agents, list) or agent not in sprint.agents:
                raise ConfigError(
                    file, f"{path}.per_agent.{agent}", f"'{agent}' is not in {path}.agents (list it by name)"
                )
            if tokens < 1:
                raise ConfigError(file, f"{path}.per_agent.{agent}", "must be at least 1 token")
        if sum(sprint.per_agent.values()) > sprint.total_tokens:
            raise ConfigError(
                file, f"{path}.per_agent", "the per-agent budgets add up to more than total_tokens"
            )
        if sprint.agent_count > len(sprint.per_agent) and sprint.equal_share < 1:
            raise ConfigError(file, f"{path}.total_tokens", "leaves less than one token for each other agent")
    url = config.webhook.url
    if url and not url.startswith(("http://", "https://")):
        raise ConfigError(file, "budgets.webhook.url", "must start with http:// or https://")
