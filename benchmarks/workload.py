"""What a load tool sends: request templates that both load tools (wrk and aiohttp) understand.

A template is plain data, not a Python callable, so the wrk driver can turn it into Lua: a body may hold the
:data:`UNIQUE` marker, which each request replaces with an id no other request of the run shares (defeating
any cache); templates without it are sent byte for byte.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

UNIQUE = "@@UNIQUE@@"
MODEL = "gpt-4o-mini"
BASE_HEADERS: Mapping[str, str] = {
    "Content-Type": "application/json",
    "Authorization": "Bearer sk-bench-client",
}


@dataclass(frozen=True, slots=True)
class RequestTemplate:
    """One kind of POST request; ``parts`` is the body split at the :data:`UNIQUE` markers."""

    body: str
    headers: Mapping[str, str] = field(default_factory=lambda: dict(BASE_HEADERS))

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.body.split(UNIQUE))

    def render(self, unique_id: str) -> bytes:
        return unique_id.join(self.parts).encode()


@dataclass(frozen=True, slots=True)
class Workload:
    """Requests to one path, sent round-robin over ``templates`` on every connection."""

    path: str
    templates: tuple[RequestTemplate, ...]
    expect: bytes = b""
    """A probe answer must contain this (e.g. the last SSE event), so a broken relay is caught before load."""

    def models(self) -> set[str]:
        """The model names the bodies ask for (a comparison target must serve them)."""
        return {json.loads(t.render("x"))["model"] for t in self.templates}


def chat_body(user: str, *, system: str = "", stream: bool = False, model: str = MODEL) -> str:
    """A chat-completions body as JSON text (markers in ``user`` or ``system`` survive the encoding)."""
    messages: list[dict[str, Any]] = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": user})
    body: dict[str, Any] = {"model": model, "messages": messages}
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":"))


def responses_body(user: str, *, instructions: str = "", stream: bool = False, model: str = MODEL) -> str:
    """A Responses API body as JSON text: instructions and one user input item."""
    body: dict[str, Any] = {"model": model, "input": [{"role": "user", "content": user}]}
    if instructions:
        body["instructions"] = instructions
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":"))
