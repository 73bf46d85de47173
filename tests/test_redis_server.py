"""The suite's Redis launcher: a server it starts is its own, never another suite's on the same port."""

from __future__ import annotations

import pytest

from tests.fakes.redis_server import RedisServer


def test_a_port_taken_by_another_server_is_refused(redis_server: RedisServer) -> None:
    """Two suites racing for one free port would otherwise share (and flush) one server."""
    second = RedisServer(port=redis_server.port)
    try:
        with pytest.raises(RuntimeError, match=r"exited|served by another process"):
            second.start(timeout=5)
        assert second._proc is None
    finally:
        second.close()


def test_the_ownership_check_names_the_other_process(redis_server: RedisServer) -> None:
    """Deterministic half of the race above: a PING answered by a server of another pid is no start."""
    assert redis_server._proc is not None
    assert RedisServer(port=redis_server.port)._answers_as(redis_server._proc.pid)
    with pytest.raises(RuntimeError, match="served by another process"):
        RedisServer(port=redis_server.port)._answers_as(redis_server._proc.pid + 1)
