"""The LiteLLM proxy as a comparison target: pinned install in its own venv, config, start.

LiteLLM lives in a cached virtual environment outside the repository, never in the gateway's, and only at
the pinned vetted version: 1.82.7, 1.82.8 and 1.107.0 were compromised releases and are refused even if
the pin is edited. The proxy gets the same upstream, the same worker count and the same models.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from tests.fakes.redis_server import free_port

from .gateway_policy import write_yaml
from .processes import ManagedProcess, StartError, cmdline, wait_started

LITELLM_VERSION = "1.81.0"
COMPROMISED = frozenset({"1.82.7", "1.82.8", "1.107.0"})
INSTALL_TIMEOUT_S = 900.0
START_TIMEOUT_S = 180.0  # the proxy imports a lot before it listens


class LiteLLMUnavailable(RuntimeError):
    """LiteLLM could not be installed or started; the comparison is skipped, the rest goes on."""


def venv_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "llm-gateway-bench" / f"litellm-{LITELLM_VERSION}"


def installed_version(venv: Path) -> str | None:
    python = venv / "bin" / "python"
    if not python.exists():
        return None
    done = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else None


def ensure_litellm(log_path: Path) -> Path:
    """The ``litellm`` executable of the pinned version, installing it first if needed."""
    if LITELLM_VERSION in COMPROMISED:
        raise LiteLLMUnavailable(f"refusing litellm {LITELLM_VERSION}: a compromised release")
    venv = venv_dir()
    executable = venv / "bin" / "litellm"
    if executable.exists() and installed_version(venv) == LITELLM_VERSION:
        return executable
    print(f"installing litellm[proxy]=={LITELLM_VERSION} into {venv} ...", file=sys.stderr, flush=True)
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            f"litellm[proxy]=={LITELLM_VERSION}",
        ],
    ]
    with log_path.open("w") as log:
        for step in steps:
            try:
                done = subprocess.run(
                    step, stdout=log, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT_S, check=False
                )
            except subprocess.TimeoutExpired:
                raise LiteLLMUnavailable(f"install timed out after {INSTALL_TIMEOUT_S:.0f} s") from None
            if done.returncode != 0:
                tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-5:])
                raise LiteLLMUnavailable(f"install failed (no network?): {' '.join(step[-2:])}\n{tail}")
    version = installed_version(venv)
    if version != LITELLM_VERSION or not executable.exists():
        raise LiteLLMUnavailable(f"install left litellm {version}, expected {LITELLM_VERSION}")
    return executable


def litellm_config(upstream_url: str, models: Iterable[str]) -> dict[str, object]:
    """Every benchmark model through LiteLLM's OpenAI provider to the fake upstream."""
    model_list = [
        {
            "model_name": model,
            "litellm_params": {
                "model": f"openai/{model}",
                "api_base": upstream_url + "/v1",
                "api_key": "sk-bench-provider",
            },
        }
        for model in sorted(set(models))
    ]
    return {"model_list": model_list, "litellm_settings": {"telemetry": False}}


def start_litellm(
    run_dir: Path, upstream_url: str, workers: int, models: Iterable[str]
) -> tuple[ManagedProcess, str]:
    """Install if needed and start ``litellm --config ... --num_workers N``; returns it and its base URL."""
    executable = ensure_litellm(run_dir / "litellm-install.log")
    config = write_yaml(run_dir / "litellm.yaml", litellm_config(upstream_url, models))
    port = free_port()
    argv = [
        str(executable),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        str(workers),
    ]
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "LITELLM_TELEMETRY": "False",
        "NO_DOCS": "True",
    }
    env.pop("DATABASE_URL", None)
    proc = ManagedProcess("litellm", argv, run_dir / "litellm.log", env=env)
    try:
        return wait_started(proc, port, "/health/liveliness", START_TIMEOUT_S)
    except StartError as exc:
        raise LiteLLMUnavailable(f"the proxy did not start: {exc}") from None


def is_helper_process(pid: int) -> bool:
    """multiprocessing's resource tracker is a child of the proxy but serves no requests."""
    return "resource_tracker" in cmdline(pid)
