"""The contract every wire protocol implements, in the spirit of httpx's small transport interface.

A protocol adapter knows one inbound API's shapes (chat completions, completions, embeddings; the
Responses and Anthropic Messages APIs next): how its bodies are checked, what its prompt is, what
changes its answer, where its usage is, how its stream is assembled and replayed, and how its errors
look. The stages ask the adapter; none of them switches on endpoint names.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from typing import Protocol as Interface

import orjson
from aiohttp import web

from gateway.errors import GatewayError
from gateway.redact import everywhere
from gateway.tokens import estimate_text

Body = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens an answer used. ``cached_input_tokens`` (prompt-cache reads) and ``cache_write_tokens``
    are part of ``prompt_tokens`` where a provider reports them; ``reasoning_tokens`` part of
    ``completion_tokens``."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Assembler(Interface):
    """Events in (each ``data:`` payload of the relayed stream), the complete answer out."""

    def on_data(self, data: bytes) -> None: ...

    def answer(self) -> Body | None:
        """The complete answer, or None when the stream did not finish properly."""
        ...


class Protocol(ABC):
    """One inbound wire protocol. Adding one is a module with a subclass plus one registry line."""

    name: ClassVar[str]
    """The endpoint label in metrics, logs, the ledger and the cache key (``chat.completions``)."""
    route: ClassVar[str]
    """The gateway's own path for it (``/v1/chat/completions``)."""
    upstream_path: ClassVar[str]
    """The provider's path for it, relative to the provider's base URL."""
    operation: ClassVar[str] = "chat"
    """Its ``gen_ai.operation.name`` on the provider call's span (OpenTelemetry GenAI conventions)."""
    streams: ClassVar[bool] = True
    """Whether requests may ask for ``stream: true``."""
    routable: ClassVar[bool] = False
    """Whether routing aliases and model rewriting apply (a generating protocol with tiers)."""
    generates: ClassVar[bool] = True
    """Whether an answer has completion tokens (the budget reserves ``max_output`` for them)."""
    provider_type: ClassVar[str | None] = None
    """The provider ``type`` that speaks this protocol natively (``anthropic``); None: any provider."""
    keeps_query: ClassVar[bool] = False
    """Whether the client's query string goes to the provider (``/v1/messages?beta=true``)."""

    def upstream_headers(self, headers: Mapping[str, str]) -> dict[str, str] | None:
        """The client headers the provider gets (protocol versions, betas); None: the default JSON ones."""
        return None

    def cache_fields(self, body: Body, headers: Mapping[str, str] | None) -> Body:
        """What the cache key hashes: the answer fields, plus forwarded headers that change the answer."""
        return self.answer_fields(body)

    def merge_usage(self, previous: Usage | None, new: Usage) -> Usage:
        """A stream's usage after an event reporting ``new`` (a protocol may report it in parts)."""
        return new

    @abstractmethod
    def validate(self, body: Body) -> None:
        """Raise ``InvalidRequest`` naming the field for a body the gateway cannot serve."""

    @abstractmethod
    def estimate(self, body: Body) -> int:
        """Prompt tokens, from what the estimator (``gateway.tokens``) reads of this protocol's prompt."""

    @abstractmethod
    def prompt(self, body: Body) -> Any:
        """The prompt as the ledger records it when ``ledger.include_prompts`` is on."""

    @abstractmethod
    def answer_fields(self, body: Body) -> Body:
        """The fields that can change the answer (what the cache key hashes, model excluded)."""

    def cacheable(self, body: Body) -> bool:
        """Whether the answer to this body may be cached at all (not one that changes state the
        provider keeps, nor one whose usage arrives later)."""
        return True

    @abstractmethod
    def usage(self, answer: Any) -> Usage | None:
        """The usage a complete answer (or one stream event) reports, or None."""

    @abstractmethod
    def answer_text(self, answer: Any) -> str:
        """The generated text of an answer or stream event, counted when the provider reports no usage."""

    @abstractmethod
    def complete(self, answer: Any) -> bool:
        """Whether an answer is finished and may be stored by the cache."""

    def is_answer(self, answer: Any) -> bool:
        """Whether a parsed JSON body is one of this protocol's answers (not an error)."""
        return isinstance(answer, dict) and "error" not in answer

    def counted(self, prompt_tokens: int, answer: Any) -> Usage | None:
        """Usage of an answer without ``usage``: the prompt estimate plus the answer's text, counted."""
        if not self.is_answer(answer):
            return None
        return Usage(prompt_tokens, estimate_text(self.answer_text(answer)))

    def stream_request(self, body: Body) -> Body | None:
        """The body to send for a stream so that the provider reports usage; None: send it as is."""
        return None

    def wants_usage(self, body: Body) -> bool:
        """Whether the client itself asked for usage in its stream."""
        return True

    @abstractmethod
    def stream_end(self, data: bytes) -> bool:
        """Whether this event's data closes the stream (after it, a hang-up is not a failure)."""

    def drop(self, event: Any, wants_usage: bool) -> bool:
        """Whether to hold back an event the gateway asked for on the client's behalf."""
        return False

    @abstractmethod
    def assembler(self, max_bytes: int) -> Assembler:
        """A fresh assembler, giving up past ``max_bytes`` of collected text."""

    @abstractmethod
    def replay(self, answer: Body, include_usage: bool, piece: int) -> list[bytes]:
        """A complete answer as this protocol's own SSE events, text cut in ``piece``-character parts."""

    def batch_task(self, stream: bool, body: Body) -> str | None:
        """The task text when the request may share a micro-batch; None: it is sent alone."""
        return None

    def error_body(self, error: GatewayError) -> Body:
        """This surface's error shape (OpenAI's by default)."""
        return error.body()

    def error_response(self, error: GatewayError) -> web.Response:
        return web.Response(
            status=error.status,
            body=orjson.dumps(self.error_body(error)),
            content_type="application/json",
            headers=error.headers,
        )

    def stream_error(self, error: GatewayError) -> bytes:
        """A failure in mid-stream as this surface's SSE error event (secrets removed)."""
        return b"data: " + everywhere().data(orjson.dumps(self.error_body(error))) + b"\n\n"
