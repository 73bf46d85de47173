"""The Portkey gateway (node) as a comparison target: pinned in ``benchmarks/portkey`` (package.json and
its lock; ``npm ci`` there on first use), started headless on loopback, and routed to the same fake
upstream per request with its ``x-portkey-provider`` / ``x-portkey-custom-host`` headers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.fakes.redis_server import free_port

from .processes import ManagedProcess, StartError, wait_started

FOLDER = Path(__file__).resolve().parent / "portkey"
SERVER = FOLDER / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
INSTALL_TIMEOUT_S = 600.0


class PortkeyUnavailable(RuntimeError):
    """node/npm missing, or the install or start failed; the comparison is skipped, the rest goes on."""


def version() -> str:
    return str(json.loads((FOLDER / "package.json").read_text())["dependencies"]["@portkey-ai/gateway"])


def ensure_portkey(log_path: Path) -> Path:
    """The server script of the pinned version, installing it with ``npm ci`` first if needed."""
    if SERVER.exists():
        return SERVER
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise PortkeyUnavailable("node and npm are needed (apt-get install nodejs npm)")
    print(f"installing @portkey-ai/gateway {version()} into {FOLDER} ...", file=sys.stderr, flush=True)
    with log_path.open("wb") as log:
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=FOLDER,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=INSTALL_TIMEOUT_S,
            check=False,
        )
    if done.returncode != 0 or not SERVER.exists():
        raise PortkeyUnavailable(f"npm ci failed (see {log_path})")
    return SERVER


def routing_headers(upstream_url: str) -> dict[str, str]:
    """What tells Portkey to send a request to the fake upstream as an OpenAI-compatible provider."""
    return {"x-portkey-provider": "openai", "x-portkey-custom-host": upstream_url.rstrip("/") + "/v1"}


def start_portkey(run_dir: Path) -> tuple[ManagedProcess, str]:
    """``node start-server.js --port=P --headless`` (no console UI); returns it and its base URL."""
    node = shutil.which("node")
    server = ensure_portkey(run_dir / "portkey-install.log")
    if node is None:
        raise PortkeyUnavailable("node is needed")
    port = free_port()
    argv = [node, str(server), f"--port={port}", "--headless"]
    proc = ManagedProcess("portkey", argv, run_dir / "portkey.log")
    try:
        return wait_started(proc, port, "/")
    except StartError as exc:
        raise PortkeyUnavailable(f"the gateway did not start: {exc}") from None
