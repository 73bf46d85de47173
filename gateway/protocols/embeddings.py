"""OpenAI embeddings (``/v1/embeddings``): input in, vectors out; never streamed, no completion tokens."""

from __future__ import annotations

from typing import Any

from gateway.errors import InvalidRequest
from gateway.protocols.base import Body, Protocol, Usage
from gateway.protocols.openai import answer_fields, openai_usage
from gateway.tokens import estimate_inputs
from gateway.validation import check_model, field_error, optional


class Embeddings(Protocol):
    name = "embeddings"
    route = "/v1/embeddings"
    upstream_path = "embeddings"
    operation = "embeddings"
    streams = False
    generates = False

    def validate(self, body: Body) -> None:
        check_model(body)
        optional(body, "stream", bool, "a boolean")
        data = body.get("input")
        if not isinstance(data, (str, list)) or not data:
            raise field_error("input", "must be a non-empty string or array", missing="input" not in body)
        if body.get("stream"):
            raise field_error("stream", "embeddings are not streamed; omit it or set it to false")

    def estimate(self, body: Body) -> int:
        return estimate_inputs(body.get("input"))

    def prompt(self, body: Body) -> Any:
        return body.get("input")

    def answer_fields(self, body: Body) -> Body:
        return answer_fields(body)

    def usage(self, answer: Any) -> Usage | None:
        return openai_usage(answer.get("usage")) if isinstance(answer, dict) else None

    def answer_text(self, answer: Any) -> str:
        return ""

    def is_answer(self, answer: Any) -> bool:
        return isinstance(answer, dict) and "data" in answer

    def complete(self, answer: Any) -> bool:
        return isinstance(answer, dict) and "error" not in answer and bool(answer.get("data"))

    def stream_end(self, data: bytes) -> bool:
        return True

    def assembler(self, max_bytes: int) -> Any:
        raise InvalidRequest("Embeddings are not streamed.", param="stream")

    def replay(self, answer: Body, include_usage: bool, piece: int) -> list[bytes]:
        raise InvalidRequest("Embeddings are not streamed.", param="stream")
