"""Files and Batch API of the fake upstream, kept in memory.

A batch advances one step per retrieve (validating → in_progress → completed), so client code that polls
is exercised without waiting; on completion every JSONL line is answered like the live endpoint would.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from email.message import Message
from email.parser import HeaderParser
from typing import Any

import orjson
from aiohttp import web

from .upstream_bodies import ApiError, new_id

Answer = Callable[[str, Any], dict[str, Any]]  # (endpoint path, request body) -> response body
BATCH_ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses")


def parse_multipart(content_type: str, raw: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Split a ``multipart/form-data`` body (already read) into ``{name: (filename, data)}``."""
    header = Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str):
        raise ApiError(400, "Invalid multipart body: missing boundary.")
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in raw.split(b"--" + boundary.encode())[1:-1]:
        head, _, data = part.partition(b"\r\n\r\n")
        headers = HeaderParser().parsestr(head.decode("latin-1").strip())
        name = headers.get_param("name", header="content-disposition")
        if isinstance(name, str):
            fields[name] = (headers.get_filename(), data.removesuffix(b"\r\n"))
    return fields


def _listing(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": items,
        "has_more": False,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
    }


class FileStore:
    """In-memory ``/v1/files`` and ``/v1/batches``; ``answer`` computes the body of each batch line."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.files: dict[str, tuple[dict[str, Any], bytes]] = {}
        self.batches: dict[str, dict[str, Any]] = {}

    def clear(self) -> None:
        self.files.clear()
        self.batches.clear()

    def add_file(self, filename: str, purpose: str, data: bytes) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "id": new_id("file-"),
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }
        self.files[meta["id"]] = (meta, data)
        return meta

    def _file(self, file_id: str) -> tuple[dict[str, Any], bytes]:
        if file_id not in self.files:
            raise ApiError(404, f"No such File object: {file_id}", param="id")
        return self.files[file_id]

    def _batch(self, batch_id: str) -> dict[str, Any]:
        if batch_id not in self.batches:
            raise ApiError(404, f"No batch found with id '{batch_id}'.")
        return self.batches[batch_id]

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/files", self.upload),
            web.get("/v1/files", self.list_files),
            web.get("/v1/files/{id}", self.get_file),
            web.delete("/v1/files/{id}", self.delete_file),
            web.get("/v1/files/{id}/content", self.file_content),
            web.post("/v1/batches", self.create_batch),
            web.get("/v1/batches", self.list_batches),
            web.get("/v1/batches/{id}", self.get_batch),
            web.post("/v1/batches/{id}/cancel", self.cancel_batch),
        ]

    async def upload(self, request: web.Request) -> web.Response:
        fields = parse_multipart(request.headers.get("Content-Type", ""), await request.read())
        if "file" not in fields or "purpose" not in fields:
            missing = "file" if "file" not in fields else "purpose"
            raise ApiError(
                400,
                f"Missing required parameter: '{missing}'.",
                param=missing,
                code="missing_required_parameter",
            )
        filename, data = fields["file"]
        return web.json_response(
            self.add_file(filename or "upload", fields["purpose"][1].decode(), data), dumps=_dumps
        )

    async def list_files(self, request: web.Request) -> web.Response:
        purpose = request.query.get("purpose")
        items = [meta for meta, _ in self.files.values() if purpose in (None, meta["purpose"])]
        return web.json_response(_listing(items), dumps=_dumps)

    async def get_file(self, request: web.Request) -> web.Response:
        return web.json_response(self._file(request.match_info["id"])[0], dumps=_dumps)

    async def delete_file(self, request: web.Request) -> web.Response:
        meta, _ = self._file(request.match_info["id"])
        del self.files[meta["id"]]
        return web.json_response({"id": meta["id"], "object": "file", "deleted": True}, dumps=_dumps)

    async def file_content(self, request: web.Request) -> web.Response:
        data = self._file(request.match_info["id"])[1]
        return web.Response(body=data, content_type="application/octet-stream")

    async def create_batch(self, request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            raise ApiError(400, "We could not parse the JSON body of your request.")
        file_id, endpoint = body.get("input_file_id"), body.get("endpoint")
        if file_id not in self.files:
            raise ApiError(400, f"Invalid 'input_file_id': '{file_id}'.", param="input_file_id")
        if endpoint not in BATCH_ENDPOINTS:
            raise ApiError(400, f"Invalid 'endpoint': '{endpoint}'.", param="endpoint")
        if body.get("completion_window") != "24h":
            raise ApiError(
                400, "Invalid 'completion_window': only '24h' is supported.", param="completion_window"
            )
        now = int(time.time())
        batch = {
            "id": new_id("batch_"),
            "object": "batch",
            "endpoint": endpoint,
            "errors": None,
            "input_file_id": file_id,
            "completion_window": "24h",
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": now,
            "in_progress_at": None,
            "expires_at": now + 86400,
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": body.get("metadata"),
        }
        self.batches[batch["id"]] = batch
        return web.json_response(batch, dumps=_dumps)

    async def list_batches(self, request: web.Request) -> web.Response:
        return web.json_response(_listing(list(reversed(self.batches.values()))), dumps=_dumps)

    async def get_batch(self, request: web.Request) -> web.Response:
        batch = self._batch(request.match_info["id"])
        if batch["status"] == "validating":
            batch.update(status="in_progress", in_progress_at=int(time.time()))
        elif batch["status"] == "in_progress":
            self._complete(batch)
        return web.json_response(batch, dumps=_dumps)

    async def cancel_batch(self, request: web.Request) -> web.Response:
        batch = self._batch(request.match_info["id"])
        if batch["status"] in ("validating", "in_progress"):
            now = int(time.time())
            batch.update(status="cancelled", cancelling_at=now, cancelled_at=now)
        return web.json_response(batch, dumps=_dumps)

    def _complete(self, batch: dict[str, Any]) -> None:
        """Answer every line of the input file and write the output / error files."""
        lines = [line for line in self.files[batch["input_file_id"]][1].splitlines() if line.strip()]
        outputs, errors = [], []
        for line in lines:
            item = orjson.loads(line)
            result: dict[str, Any] = {
                "id": new_id("batch_req_"),
                "custom_id": item.get("custom_id"),
                "error": None,
            }
            try:
                if item.get("url") != batch["endpoint"]:
                    raise ApiError(
                        400,
                        "The URL provided for this request does not match the batch "
                        f"endpoint {batch['endpoint']}.",
                        param="url",
                    )
                body = self.answer(batch["endpoint"], item.get("body"))
                result["response"] = {"status_code": 200, "request_id": new_id("req_"), "body": body}
                outputs.append(result)
            except ApiError as exc:
                result["response"] = {
                    "status_code": exc.status,
                    "request_id": new_id("req_"),
                    "body": exc.body,
                }
                errors.append(result)
        now = int(time.time())
        for key, rows in (("output_file_id", outputs), ("error_file_id", errors)):
            if rows:
                data = b"".join(orjson.dumps(row) + b"\n" for row in rows)
                batch[key] = self.add_file(f"{batch['id']}_{key[:-8]}.jsonl", "batch_output", data)["id"]
        batch.update(
            status="completed",
            finalizing_at=now,
            completed_at=now,
            request_counts={"total": len(lines), "completed": len(outputs), "failed": len(errors)},
        )


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()
