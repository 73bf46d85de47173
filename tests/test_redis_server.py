"""The suite's Redis launcher: a server it starts is its own, never another suite's on the same port."""

from __future__ import annotations

import pytest

from gateway.testing.redis_server import RedisServer


def test_a_port_taken_by_another_server_is_refused(redis_server: RedisServer) -> None:
    """Two suites racing for one free port would otherwise share (and flush) one server."""
    second = RedisServer(port=redis_server.port)
    try:
        with pytest.raises(RuntimeError, match="served by another process"):
            second.start(timeout=5)
        assert second._proc is None
    finally:
        second.close()
