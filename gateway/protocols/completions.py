"""OpenAI (legacy) completions (``/v1/completions``): a prompt in, text out."""

from __future__ import annotations

from typing import Any

from gateway.protocols.base import Body
from gateway.protocols.openai import ChoicesAssembler, OpenAIProtocol, pieces, replay_choices
from gateway.tokens import estimate_inputs
from gateway.validation import field_error, integer_field


class Completions(OpenAIProtocol):
    name = "completions"
    route = "/v1/completions"
    upstream_path = "completions"
    operation = "text_completion"

    def validate(self, body: Body) -> None:
        super().validate(body)
        if "prompt" not in body:
            raise field_error("prompt", "", missing=True)
        prompt = body["prompt"]
        if prompt is not None and not isinstance(prompt, (str, list)):
            raise field_error("prompt", "must be a string, an array or null")
        integer_field(body, "max_tokens", minimum=0)  # 0 scores a prompt (echo with logprobs)
        integer_field(body, "n", minimum=1)

    def estimate(self, body: Body) -> int:
        """A null or empty prompt is the model's default one (``<|endoftext|>``, one token)."""
        return estimate_inputs(body.get("prompt")) or 1

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
