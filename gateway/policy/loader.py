"""Read a policy file: YAML, then ``${VAR}`` / ``${VAR:-default}`` interpolation, then schema validation.

Every failure becomes one :class:`ConfigError` naming the file, the key path and what is wrong, so the
CLI can print a single line and exit 2 instead of a traceback.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """A policy problem, located by file and dotted key path."""

    def __init__(self, file: str, path: str, message: str) -> None:
        self.file, self.path, self.message = file, path, message
        where = f"key '{path}': " if path else ""
        super().__init__(f"policy {file}: {where}{message}")


def interpolate(value: Any, env: Mapping[str, str], file: str, path: str = "") -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string of a parsed YAML tree."""
    if isinstance(value, dict):
        return {k: interpolate(v, env, file, _join(path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, file, f"{path}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env and env[name] != "":
            return env[name]
        if default is not None:
            return default
        raise ConfigError(file, path, f"environment variable {name} is not set and has no default")

    return _VAR.sub(substitute, value)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Parse the YAML file into a mapping, with errors that say where."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(file, "", f"cannot read file: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(file, "", f"invalid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(file, "", f"the top level must be a mapping, not {type(data).__name__}")
    return data


def describe_validation_error(file: str, exc: ValidationError) -> ConfigError:
    """Turn pydantic's error list into one located message (the first problem, and how many more)."""
    errors = exc.errors()
    first = errors[0]
    path = ".".join(str(p) for p in first["loc"])
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown key (check the spelling against docs/policy.md)"
    if "input" in first and first["type"] not in ("missing", "extra_forbidden"):
        shown = repr(first["input"])
        if len(shown) <= 60 and "key" not in path.lower():
            message += f" (got {shown})"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return ConfigError(file, path, message)


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)
