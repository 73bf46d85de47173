"""Identity on the wire: key bytes that are not UTF-8 get a 401, not a 500."""

from __future__ import annotations

import json
import socket

import pytest

MESSAGES = [{"role": "user", "content": "whose answer is this"}]


def raw_request(url: str, method: str, path: str, header: bytes) -> tuple[int, bytes]:
    """One HTTP/1.1 request with a header line sent as raw bytes (clients refuse to send such bytes)."""
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"model": "gpt-4o-mini", "messages": MESSAGES}).encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n".encode()
    head += header + f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize(
    "header",
    [b"Authorization: Bearer gw-\xff\xfe", b"api-key: gw-\xe9t\xe9", b"x-api-key: \xed\xa0\x80"],
)
@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/chat/completions"), ("DELETE", "/admin/cache")])
def test_key_bytes_that_are_not_utf8_get_a_401(gateway: str, header: bytes, method: str, path: str) -> None:
    status, body = raw_request(gateway, method, path, header)
    assert status == 401
    error = json.loads(body)["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_api_key"
    assert set(error) == {"message", "type", "param", "code"}
