"""Policy loading: interpolation, schema errors that name file and key, and the check-config command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.policy import ConfigError, load_policy
from gateway.policy.loader import interpolate

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def test_default_policy_loads_with_env(tmp_path: Path) -> None:
    env = {
        "UPSTREAM_BASE_URL": "http://127.0.0.1:1/v1",
        "OPENAI_API_KEY": "sk-x",
        "REDIS_URL": "redis://h:1/0",
    }
    policy = load_policy(ROOT / "policies" / "default.yaml", env=env)
    assert policy.providers["openai"].base_url == "http://127.0.0.1:1/v1"
    assert policy.providers["openai"].api_key == "sk-x"
    assert policy.store.url == "redis://h:1/0"
    assert "*" in policy.models


def test_default_policy_defaults_without_env() -> None:
    policy = load_policy(ROOT / "policies" / "default.yaml", env={})
    assert policy.providers["openai"].base_url == "https://api.openai.com/v1"
    assert policy.store.url == ""
    assert policy.server.port == 8080


def test_interpolation_forms() -> None:
    env = {"A": "1", "EMPTY": ""}
    tree = {"x": "${A}", "y": "pre-${A}-post", "z": ["${B:-two}"], "w": "${EMPTY:-fallback}"}
    assert interpolate(tree, env, "f") == {"x": "1", "y": "pre-1-post", "z": ["two"], "w": "fallback"}


def test_missing_variable_names_key(tmp_path: Path) -> None:
    path = write(tmp_path, "providers:\n  p:\n    api_key: ${NOPE_NOT_SET}\n")
    with pytest.raises(ConfigError) as info:
        load_policy(path, env={})
    assert info.value.path == "providers.p.api_key"
    assert "NOPE_NOT_SET" in str(info.value)


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ("server:\n  port: abc\n", "server.port", "integer"),
        ("server:\n  prot: 1\n", "server.prot", "unknown key"),
        ("providers:\n  p: {base_url: 'ftp://x'}\n", "providers.p.base_url", "http"),
        ("providers:\n  p: {}\nmodels:\n  m: {provider: q}\n", "models.m.provider", "unknown provider"),
        (
            "providers:\n  p: {}\nmodels:\n  m: {provider: p, fallbacks: [zz]}\n",
            "models.m.fallbacks[0]",
            "zz",
        ),
        ("auth:\n  keys: [{agent: a}]\n", "auth.keys.0", "exactly one"),
        ("store:\n  url: 'http://nope'\n", "store.url", "redis://"),
        ("- a list\n", "", "mapping"),
        ("server: [\n", "", "invalid YAML"),
    ],
)
def test_bad_policies_name_the_key(tmp_path: Path, text: str, key: str, words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_policy(path, env={})
    assert info.value.path == key
    assert words in str(info.value)
    assert str(path) in str(info.value)


def test_check_config_cli(tmp_path: Path) -> None:
    good = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(ROOT / "policies" / "default.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith("ok:")
    bad = write(tmp_path, "server:\n  port: [1, 2]\n")
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert str(bad) in result.stderr and "server.port" in result.stderr


def test_serve_refuses_workers_with_memory_store(tmp_path: Path) -> None:
    path = write(tmp_path, "providers:\n  p: {}\n")
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--config", str(path), "--workers", "2"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 2
    assert "shared store" in result.stderr and "Traceback" not in result.stderr
