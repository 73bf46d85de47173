"""``--workers N``: N serving processes sharing one port (SO_REUSEPORT), watched by this parent.

Metrics are shared through prometheus-client's multiprocess directory, so a scrape of any worker
reports the sum over all of them. A worker that dies is replaced; SIGTERM is passed on to every worker
and the parent waits for them to drain.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from types import FrameType

from gateway.prometheus import MULTIPROC_ENV, mark_process_dead

WORKER_ENV = "LLMGW_WORKER"
"""Set in each worker's environment: it then binds its port with SO_REUSEPORT, beside its siblings."""


def supervise(argv: list[str], workers: int) -> int:
    metrics_dir = tempfile.mkdtemp(prefix="llmgw-metrics-")
    env = {**os.environ, MULTIPROC_ENV: metrics_dir, WORKER_ENV: "1"}
    os.environ[MULTIPROC_ENV] = metrics_dir
    command = [sys.executable, "-m", "gateway", *_single_worker(argv)]
    children = [subprocess.Popen(command, env=env) for _ in range(workers)]
    stopping = False

    def forward(signum: int, _: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        while not stopping:
            for i, child in enumerate(children):
                if child.poll() is not None and not stopping:
                    mark_process_dead(child.pid)
                    print(
                        f"llm-gateway: worker {child.pid} exited ({child.returncode}); restarting",
                        file=sys.stderr,
                    )
                    children[i] = subprocess.Popen(command, env=env)
            time.sleep(0.2)
        codes = [child.wait() for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
        for name in os.listdir(metrics_dir):
            os.unlink(os.path.join(metrics_dir, name))
        os.rmdir(metrics_dir)
    # A worker still starting when the signal came has no handler yet and dies of the signal: also clean.
    clean = (0, -signal.SIGTERM, -signal.SIGINT)
    return 0 if all(code in clean for code in codes) else 1


def _single_worker(argv: list[str]) -> list[str]:
    """The same command line, with ``--workers 1``."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--workers":
            skip = True
            continue
        if arg.startswith("--workers="):
            continue
        out.append(arg)
    return [*out, "--workers", "1"]
