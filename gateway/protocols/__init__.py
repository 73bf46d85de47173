"""The wire protocols the gateway serves, one adapter each (see ``base.Protocol``).

The server registers one route per adapter from :data:`PROTOCOLS`; adding a protocol is a module with
its adapter plus one line here."""

from __future__ import annotations

from gateway.protocols.base import Assembler, Body, Protocol, Usage
from gateway.protocols.chat import Chat
from gateway.protocols.completions import Completions
from gateway.protocols.embeddings import Embeddings
from gateway.protocols.messages import CountTokens, Messages
from gateway.protocols.responses import Responses

CHAT, COMPLETIONS, EMBEDDINGS, RESPONSES = Chat(), Completions(), Embeddings(), Responses()
MESSAGES, COUNT_TOKENS = Messages(), CountTokens()
PROTOCOLS: dict[str, Protocol] = {
    p.route: p for p in (CHAT, COMPLETIONS, EMBEDDINGS, RESPONSES, MESSAGES, COUNT_TOKENS)
}
"""Route path → adapter."""
BY_NAME: dict[str, Protocol] = {p.name: p for p in PROTOCOLS.values()}
"""Endpoint label → adapter (ledger records, the what-if replay)."""

__all__ = [
    "BY_NAME",
    "CHAT",
    "COMPLETIONS",
    "COUNT_TOKENS",
    "EMBEDDINGS",
    "MESSAGES",
    "PROTOCOLS",
    "RESPONSES",
    "Assembler",
    "Body",
    "Protocol",
    "Usage",
]
