"""The processes a benchmark starts (fake upstream, gateway, LiteLLM), their readiness and their memory.

Each child runs in its own session and process group, so stopping it also stops the workers it forked,
and a Ctrl-C in the terminal reaches only the harness, which then stops everything in order. Children
run in the run's temporary folder, so files a gateway writes beside itself (the request ledger's JSONL
with the memory store) land there and not in the work tree. Output goes to a log file in that folder,
whose tail is shown when a process fails to start.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tests.fakes.redis_server import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 30.0


class StartError(RuntimeError):
    """A process exited or did not become ready; the message carries the end of its log."""


class ManagedProcess:
    """A child process we own: started in its own process group, stopped with its children."""

    def __init__(
        self, name: str, argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.name = name
        self.log_path = log_path
        with log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env) if env is not None else None,
                cwd=log_path.parent,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self._proc.pid

    def wait_ready(self, ready: Callable[[], bool], timeout_s: float = START_TIMEOUT_S) -> None:
        """Poll ``ready`` until true; :class:`StartError` if the process exits or time runs out first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                status = self._proc.returncode
                raise StartError(f"{self.name} exited with status {status}:\n{self.log_tail()}")
            if ready():
                return
            time.sleep(0.1)
        raise StartError(f"{self.name} was not ready after {timeout_s:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM to the whole group, then SIGKILL to whatever is left after ``timeout_s``."""
        if self._proc.poll() is None:
            self._signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=timeout_s)
        self._signal(signal.SIGKILL)  # children that outlived their parent
        self._proc.wait()

    def _signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signum)

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def repo_env() -> dict[str, str]:
    """Our environment with this work tree importable, for children that do not run from it."""
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def http_ok(url: str) -> Callable[[], bool]:
    """A readiness check: GET ``url`` answers 200."""

    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    return check


def start_upstream(run_dir: Path, latency_ms: float) -> tuple[ManagedProcess, str]:
    """The fake OpenAI-compatible upstream on a free port; returns it and its base URL (no ``/v1``)."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "tests.fakes.upstream",
        "--batch-aware",  # the batch scenario measures batches, not their fallback
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--latency-ms",
        str(latency_ms),
    ]
    return wait_started(
        ManagedProcess("fake upstream", argv, run_dir / "upstream.log", repo_env()), port, "/v1/models"
    )


def start_gateway(run_dir: Path, label: str, policy_path: Path, workers: int) -> tuple[ManagedProcess, str]:
    """``python -m gateway serve`` with a generated policy on a free port; returns it and its base URL."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "gateway",
        "serve",
        "--config",
        str(policy_path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    return wait_started(
        ManagedProcess(label, argv, run_dir / f"{_slug(label)}.log", repo_env()), port, "/healthz"
    )


def wait_started(
    proc: ManagedProcess, port: int, health_path: str, timeout_s: float = START_TIMEOUT_S
) -> tuple[ManagedProcess, str]:
    """Wait until ``health_path`` answers 200 (stopping the process if it never does)."""
    base_url = f"http://127.0.0.1:{port}"
    try:
        proc.wait_ready(http_ok(base_url + health_path), timeout_s)
    except BaseException:
        proc.stop()
        raise
    return proc, base_url


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


def children(pid: int) -> list[int]:
    """Direct children of ``pid``, from ``/proc/*/stat``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, ...
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def rss_mb(pid: int) -> float | None:
    """Resident memory of one process in MiB (``VmRSS``), or None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def worker_rss_mb(pid: int, exclude: Callable[[int], bool] = lambda _: False) -> list[float]:
    """RSS of each serving process: the children of a supervisor (``--workers N``), else ``pid`` itself."""
    workers = [child for child in children(pid) if not exclude(child)] or [pid]
    return [mb for mb in map(rss_mb, workers) if mb is not None]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
