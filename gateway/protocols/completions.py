"""OpenAI (legacy) completions (``/v1/completions``): a prompt in, text out."""

from __future__ import annotations

from typing import Any

from gateway.protocols.base import Body
from gateway.protocols.openai import ChoicesAssembler, OpenAIProtocol, pieces, replay_choices
from gateway.tokens import estimate_inputs
from gateway.validation import field_error, positive_int


class Completions(OpenAIProtocol):
    name = "completions"
    route = "/v1/completions"
    upstream_path = "completions"
    operation = "text_completion"

    def validate(self, body: Body) -> None:
        super().validate(body)
        prompt = body.get("prompt")
        if not isinstance(prompt, (str, list)) or (isinstance(prompt, list) and not prompt):
            raise field_error("prompt", "must be a string or a non-empty array", missing="prompt" not in body)
        positive_int(body, "max_tokens")
        positive_int(body, "n")

    def estimate(self, body: Body) -> int:
        return estimate_inputs(body.get("prompt"))

    def prompt(self, body: Body) -> Any:
        return body.get("prompt")

    def assembler(self, max_bytes: int) -> CompletionsAssembler:
        return CompletionsAssembler(self, max_bytes)

    def replay(self, answer: Body, include_usage: bool, piece: int) -> list[bytes]:
        return replay_choices(answer, "text_completion", include_usage, piece, _events)


class CompletionsAssembler(ChoicesAssembler):
    kind = "text_completion"

    def merge(self, slot: dict[str, Any], choice: dict[str, Any]) -> None:
        self.collect(slot["text"], choice.get("text") or "")

    def choice(self, index: int, slot: dict[str, Any]) -> dict[str, Any]:
        text, finish = "".join(slot["text"]), slot.get("finish_reason")
        return {"index": index, "text": text, "logprobs": None, "finish_reason": finish}


def _events(choice: dict[str, Any], piece: int) -> list[tuple[dict[str, Any], str | None]]:
    out: list[tuple[dict[str, Any], str | None]] = [
        ({"text": part}, None) for part in pieces(choice.get("text") or "", piece)
    ]
    out.append(({"text": ""}, choice.get("finish_reason")))
    return out
