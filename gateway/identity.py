"""Who is asking: gateway API keys map to an agent and team, context headers describe the task.

Agents hold only a gateway key; the provider key never leaves the gateway. Keys are compared by their
SHA-256, so the policy may list either the key or its hash. A client names its own agent (``X-Agent-Id``,
body ``user``) only in open mode or with a key that is trusted to: otherwise any key holder could read
another agent's cached answers and spend its budget.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.context import Request
from gateway.errors import Forbidden, InvalidRequest, Unauthorized
from gateway.policy.core import NAME_PATTERN, NAME_RULE, AuthConfig
from gateway.protocols import Protocol

if TYPE_CHECKING:
    from gateway.policy import Policy

ANONYMOUS = "anonymous"
_AGENT = re.compile(NAME_PATTERN)
_NAME = re.compile(r"^[A-Za-z0-9_.:@/\-]{1,128}$")
_TASK_TYPE = re.compile(r"^[a-z0-9_\-]{1,64}$")
_PRIORITY = re.compile(r"^[Pp][0-3]$")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass(frozen=True, slots=True)
class Identity:
    agent: str | None
    team: str
    trust_agent_header: bool = False
    """For a key without an agent: the client may name its agent (open mode, or the policy allows it)."""


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a client sent, as the OpenAI SDK (Bearer) or Azure-style clients (api-key) send it."""
    auth = headers.get("Authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        key = token.strip() if scheme.lower() == "bearer" else ""
    else:
        key = headers.get("api-key") or headers.get("x-api-key") or ""
    if not key.isprintable():
        # aiohttp keeps header bytes that are not UTF-8 as surrogates, which cannot be hashed.
        raise Unauthorized("The API key must be printable UTF-8 text.")
    return key or None


class Authenticator:
    """Maps a presented key to an :class:`Identity`; an empty key list means open mode."""

    def __init__(self, auth: AuthConfig, *, trust_by_default: bool = False) -> None:
        self._by_hash: dict[str, Identity] = {}
        for entry in auth.keys:
            digest = entry.key_sha256.lower() if entry.key_sha256 else _sha256(entry.key or "")
            trust = trust_by_default if entry.trust_agent_header is None else entry.trust_agent_header
            self._by_hash[digest] = Identity(entry.agent, entry.team, entry.agent is None and trust)
        self.open_mode = not self._by_hash

    @classmethod
    def for_policy(cls, policy: Policy) -> Authenticator:
        """Keys trust ``X-Agent-Id`` by default only where the agent decides nothing that others own:
        not when answers are cached per agent, nor when budget sprints give each agent a share."""
        per_agent = (policy.cache.enabled and policy.cache.scope == "agent") or bool(policy.budgets.sprints)
        return cls(policy.auth, trust_by_default=not per_agent)

    def identify(self, headers: Mapping[str, str]) -> Identity:
        if self.open_mode:
            return Identity(None, "default", trust_agent_header=True)
        key = presented_key(headers)
        if not key:
            raise Unauthorized(
                "You didn't provide an API key. Send your gateway key as 'Authorization: Bearer KEY'.",
                code="missing_api_key",
            )
        identity = self._by_hash.get(_sha256(key))
        if identity is None:
            raise Unauthorized("Incorrect API key provided for this gateway.")
        return identity


def check_admin(headers: Mapping[str, str], admin_key: str) -> None:
    """Admin routes need the admin key; with none configured they are closed."""
    if not admin_key:
        raise Unauthorized(
            "Admin API is disabled: set server.admin_key (GATEWAY_ADMIN_KEY).", code="admin_disabled"
        )
    key = presented_key(headers)
    if not key or not secrets.compare_digest(key.encode(), admin_key.encode()):
        raise Unauthorized("Admin key required.", code="invalid_admin_key")


def build_context(
    request_id: str, protocol: Protocol, identity: Identity, headers: Mapping[str, str], body: dict[str, Any]
) -> Request:
    """The request, fixed from here on: the optional context headers and body hints parsed once (bad
    values are a 400 naming the header), the prompt estimated once."""
    agent = identity.agent or _claimed_agent(identity, headers, body)
    task_type = headers.get("X-Task-Type")
    if task_type is not None:
        task_type = task_type.strip().lower()
        if not _TASK_TYPE.match(task_type):
            raise InvalidRequest(
                "X-Task-Type must be a short lowercase word such as refactor, test, qa or creative.",
                param="X-Task-Type",
                code="invalid_header",
            )
    priority = headers.get("X-Priority")
    if priority is not None:
        if not _PRIORITY.match(priority.strip()):
            raise InvalidRequest(
                "X-Priority must be one of P0, P1, P2, P3.", param="X-Priority", code="invalid_header"
            )
        priority = priority.strip().upper()
    return Request(
        request_id=request_id,
        protocol=protocol,
        agent=agent or ANONYMOUS,
        team=identity.team,
        task_type=task_type,
        priority=priority,
        task_id=_name(headers, "X-Task-Id"),
        sprint=_name(headers, "X-Sprint"),
        lines_estimate=_int(headers, "X-Lines-Estimate"),
        batchable=_bool(headers, "X-Batchable"),
        cache_control=headers.get("Cache-Control"),
        body=body,
        stream=bool(body.get("stream")),
        client_wants_usage=protocol.wants_usage(body),
        requested_model=str(body.get("model") or ""),
        prompt_estimate=protocol.estimate(body),
    )


def _claimed_agent(identity: Identity, headers: Mapping[str, str], body: dict[str, Any]) -> str | None:
    """The agent a client names itself: ``X-Agent-Id``, else the body's ``user``.

    A key that is not trusted to name agents gets a 403 for ``X-Agent-Id`` (its requests would otherwise
    be charged to an agent nobody chose); the body's ``user``, which SDKs set on their own, is then only
    passed on to the provider."""
    header = headers.get("X-Agent-Id")
    claimed = _agent_name(header.strip(), "X-Agent-Id") if header is not None else None
    if not identity.trust_agent_header:
        if claimed not in (None, ANONYMOUS):
            raise Forbidden(
                "This API key may not choose its agent with X-Agent-Id: use a key bound to an agent, "
                "or set trust_agent_header: true on this key in the gateway policy.",
                param="X-Agent-Id",
                code="agent_header_not_trusted",
            )
        return None
    if claimed:
        return claimed
    user = body.get("user")
    # OpenAI accepts any string as ``user``: one that is not a valid agent name names no agent.
    return user if isinstance(user, str) and _AGENT.fullmatch(user) else None


def _agent_name(value: str, param: str) -> str:
    if not _AGENT.fullmatch(value):
        raise InvalidRequest(
            f"{param} names the agent and must be {NAME_RULE}.", param=param, code="invalid_agent_name"
        )
    return value


def _name(headers: Mapping[str, str], header: str) -> str | None:
    value = headers.get(header)
    if value is None:
        return None
    value = value.strip()
    if not _NAME.match(value):
        raise InvalidRequest(
            f"{header} must be 1-128 characters of letters, digits and _.:@/-",
            param=header,
            code="invalid_header",
        )
    return value


def _int(headers: Mapping[str, str], header: str) -> int | None:
    value = headers.get(header)
    if value is None:
        return None
    try:
        number = int(value.strip())
    except ValueError:
        number = -1
    if number < 0:
        raise InvalidRequest(f"{header} must be a non-negative integer.", param=header, code="invalid_header")
    return number


def _bool(headers: Mapping[str, str], header: str) -> bool | None:
    value = headers.get(header)
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise InvalidRequest(f"{header} must be true or false.", param=header, code="invalid_header")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
