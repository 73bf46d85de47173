"""The Responses API of the fake provider (``/v1/responses``), kept in memory like the real one.

Responses are stored unless ``store: false`` (then they cannot be retrieved nor continued), continue
with ``previous_response_id``, and a ``background: true`` response advances one step per retrieve
(queued → in_progress → completed) so polling clients run without waiting. Streams are the real typed
event sequence (``event:`` + ``data:`` lines, no ``[DONE]``); a stream cut by ``break_stream_next`` ends
with an ``error`` event the way the real API reports a failure mid-stream.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any, cast

import orjson
from aiohttp import web

from .upstream_bodies import ApiError, new_id, require
from .upstream_responses_bodies import (
    Plan,
    cached_tokens,
    input_items,
    plan,
    render,
    response_object,
    stream_events,
)
from .upstream_sse import SSE_HEADERS

_FAILED = "The server had an error while processing your request. Sorry about that!"
_SEEN_PER_KEY = 64  # prompts remembered per prompt_cache_key for prefix caching


@dataclass(slots=True)
class _Stored:
    body: dict[str, Any]
    answer: Plan
    items: list[dict[str, Any]]  # this request's input items, with ids
    context: list[dict[str, Any]]  # every item the next turn continues from (inputs and outputs)
    status: str
    stored: bool
    polls: int = 0
    deleted: bool = False


def _sse(event: dict[str, Any]) -> bytes:
    kind: str = event["type"]
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def _not_found(rid: str) -> ApiError:
    return ApiError(404, f"Response with id '{rid}' not found.", param="response_id")


class ResponsesApi:
    """In-memory ``/v1/responses`` with retrieval, deletion, cancellation, input items and background."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.responses: dict[str, _Stored] = {}
        self.prompts: dict[str, list[str]] = {}  # prompt_cache_key -> prompts seen, for cached tokens

    def clear(self) -> None:
        with self._lock:
            self.responses.clear()
            self.prompts.clear()

    def routes(self) -> list[web.RouteDef]:
        """The routes besides ``POST /v1/responses`` (which the fake wires with its body and faults)."""
        return [
            web.get("/v1/responses/{id}", self.retrieve),
            web.delete("/v1/responses/{id}", self.delete),
            web.post("/v1/responses/{id}/cancel", self.cancel),
            web.get("/v1/responses/{id}/input_items", self.list_input_items),
        ]

    # -- creation -----------------------------------------------------------------------------------------
    def _context(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        previous = body.get("previous_response_id")
        if previous is None:
            return []
        with self._lock:
            record = self.responses.get(previous)
        if record is None or not record.stored or record.deleted:
            raise ApiError(
                404,
                f"Previous response with id '{previous}' not found.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        return record.context

    def _validate(self, body: Any) -> dict[str, Any]:
        require(body, "model")
        if body.get("input") is None and body.get("previous_response_id") is None:
            require(body, "input")
        if body.get("background") and body.get("store") is False:
            raise ApiError(400, "Background mode requires 'store' to be true.", param="background")
        limit = body.get("max_output_tokens")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 16):
            raise ApiError(
                400,
                "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16.",
                param="max_output_tokens",
                code="integer_below_min_value",
            )
        return cast("dict[str, Any]", body)  # require() accepts only a JSON object

    def create(self, body: Any) -> tuple[str, _Stored]:
        """Plan and record the answer to ``body``; returns its id and record (stored or not)."""
        body = self._validate(body)
        items = input_items(body.get("input") if body.get("input") is not None else [])
        context = [*self._context(body), *items]
        prompt = render(body, context)
        key = str(body.get("prompt_cache_key") or "")
        with self._lock:
            seen = self.prompts.setdefault(key, [])
            cached = cached_tokens(prompt, seen)
            seen.append(prompt)
            del seen[:-_SEEN_PER_KEY]
        answer = plan(body, context, prompt, cached)
        stored = body.get("store", True) is not False
        status = "queued" if body.get("background") and body.get("stream") is not True else answer.status
        record = _Stored(body, answer, items, [*context, *answer.output], status, stored)
        rid = new_id("resp_")
        with self._lock:
            self.responses[rid] = record
        return rid, record

    def answer(self, body: Any) -> dict[str, Any]:
        """The JSON answer to ``body`` (also used for the lines of a batch)."""
        rid, record = self.create(body)
        return response_object(record.body, rid, record.answer, record.status)

    async def handle_create(
        self,
        request: web.Request,
        body: Any,
        *,
        chunk_delay_s: float = 0.0,
        break_after: int | None = None,
    ) -> web.StreamResponse:
        rid, record = self.create(body)
        headers = {"x-request-id": new_id("req_")}
        if body.get("stream") is not True:
            obj = response_object(record.body, rid, record.answer, record.status)
            return web.Response(body=orjson.dumps(obj), content_type="application/json", headers=headers)
        resp = web.StreamResponse(headers={**SSE_HEADERS, **headers})
        await resp.prepare(request)
        for sent, event in enumerate(stream_events(record.body, rid, record.answer)):
            if sent == break_after:
                await resp.write(
                    _sse(
                        {
                            "type": "error",
                            "code": "server_error",
                            "param": None,
                            "message": _FAILED,
                            "sequence_number": sent,
                        }
                    )
                )
                break
            if sent and chunk_delay_s > 0:
                await asyncio.sleep(chunk_delay_s)
            await resp.write(_sse(event))
        await resp.write_eof()
        return resp

    # -- the stored responses -----------------------------------------------------------------------------
    def _get(self, request: web.Request) -> tuple[str, _Stored]:
        rid = request.match_info["id"]
        with self._lock:
            record = self.responses.get(rid)
        if record is None or not record.stored or record.deleted:
            raise _not_found(rid)
        return rid, record

    @staticmethod
    def _json(obj: Any) -> web.Response:
        return web.Response(
            body=orjson.dumps(obj), content_type="application/json", headers={"x-request-id": new_id("req_")}
        )

    async def retrieve(self, request: web.Request) -> web.StreamResponse:
        rid, record = self._get(request)
        with self._lock:
            if record.status in ("queued", "in_progress"):
                record.polls += 1
                record.status = "in_progress" if record.polls == 1 else record.answer.status
            status = record.status
        return self._json(response_object(record.body, rid, record.answer, status))

    async def delete(self, request: web.Request) -> web.StreamResponse:
        rid, record = self._get(request)
        record.deleted = True
        return self._json({"id": rid, "object": "response.deleted", "deleted": True})

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        rid, record = self._get(request)
        if not record.body.get("background"):
            raise ApiError(
                400, "Only responses created with background=true can be cancelled.", param="response_id"
            )
        with self._lock:
            if record.status in ("queued", "in_progress"):
                record.status = "cancelled"
            status = record.status
        return self._json(response_object(record.body, rid, record.answer, status))

    async def list_input_items(self, request: web.Request) -> web.StreamResponse:
        """``GET …/input_items``: newest first unless ``order=asc``; ``limit`` (1-100, 20), ``after``."""
        _, record = self._get(request)
        items = list(record.items)
        if request.query.get("order", "desc") == "desc":
            items.reverse()
        after = request.query.get("after")
        if after is not None:
            ids = [i["id"] for i in items]
            items = items[ids.index(after) + 1 :] if after in ids else []
        try:
            limit = int(request.query.get("limit", "20"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            raise ApiError(400, "Invalid 'limit': expected an integer between 1 and 100.", param="limit")
        page = items[:limit]
        return self._json(
            {
                "object": "list",
                "data": page,
                "has_more": len(items) > limit,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
            }
        )
