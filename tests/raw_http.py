"""A raw HTTP/1.1 client for tests that must send what no well-behaved client library would send.

httpx and aiohttp refuse control bytes, non-UTF-8 header values and broken framing on the client side;
the gateway has to answer them anyway, so these tests write the bytes themselves and parse the answer.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def request_bytes(
    method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes, host: str = "127.0.0.1"
) -> bytes:
    """A request with ``Connection: close`` and a Content-Length for the body."""
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: " + host.encode(), b"Connection: close"]
    lines += [name + b": " + value for name, value in headers]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def send(port: int, data: bytes, timeout: float = 15.0) -> RawResponse:
    """Send ``data`` as is and read the whole answer (the server closes the connection)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    return parse(received)


def parse(received: bytes) -> RawResponse:
    head, separator, rest = received.partition(b"\r\n\r\n")
    if not separator:
        raise AssertionError(f"no complete answer: {received[:200]!r}")
    status_line, *header_lines = head.split(b"\r\n")
    status = int(status_line.split(b" ")[1])
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(b":")
        # Every header the gateway sends must be printable ASCII; decoding strictly checks it.
        headers[name.decode("ascii").strip().lower()] = value.decode("ascii").strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        rest = _dechunk(rest)
    return RawResponse(status, headers, rest)


def _dechunk(data: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out
        out += data[:size]
        if data[size : size + 2] != b"\r\n":
            raise AssertionError("broken chunked body")
        data = data[size + 2 :]
