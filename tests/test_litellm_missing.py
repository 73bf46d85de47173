"""A policy with a ``type: litellm`` provider on an installation without litellm: ``check-config`` and
``serve`` refuse it with one line and exit 2 (not ``ok`` and then a traceback on the first start)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROVIDER_KEY, base_policy
from tests.fakes.redis_server import free_port


@pytest.fixture
def without_litellm(tmp_path: Path) -> dict[str, str]:
    """An environment in which ``import litellm`` fails as if it were not installed."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text('import sys\nsys.modules["litellm"] = None\n')
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(shim), os.environ.get("PYTHONPATH")])),
    }


def policy_file(tmp_path: Path, with_litellm: bool) -> Path:
    policy = base_policy(f"http://127.0.0.1:{free_port()}")
    if with_litellm:
        policy["providers"]["claude"] = {
            "type": "litellm",
            "litellm_prefix": "anthropic/",
            "api_key": PROVIDER_KEY,
        }
        policy["models"]["claude"] = {"provider": "claude"}
    path = tmp_path / ("litellm.yaml" if with_litellm else "plain.yaml")
    path.write_text(yaml.safe_dump(policy))
    return path


def gateway(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "gateway", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)


def test_check_config_and_serve_refuse_a_litellm_provider_without_litellm(
    tmp_path: Path, without_litellm: dict[str, str]
) -> None:
    policy = str(policy_file(tmp_path, with_litellm=True))
    port = str(free_port())
    for args in (
        ["check-config", policy],
        ["serve", "--config", policy, "--host", "127.0.0.1", "--port", port],
    ):
        result = gateway(*args, env=without_litellm)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert (
            "key 'providers.claude.type'" in lines[0]
            and "litellm" in lines[0]
            and "not installed" in lines[0]
        )


def test_the_check_is_about_litellm_providers_and_missing_litellm_only(
    tmp_path: Path, without_litellm: dict[str, str]
) -> None:
    plain = gateway("check-config", str(policy_file(tmp_path, with_litellm=False)), env=without_litellm)
    assert plain.returncode == 0 and plain.stdout.startswith("ok: "), plain.stderr
    installed = gateway("check-config", str(policy_file(tmp_path, with_litellm=True)))
    assert installed.returncode == 0 and installed.stdout.startswith("ok: "), installed.stderr
