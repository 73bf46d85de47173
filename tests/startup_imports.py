"""Which of some modules a gateway process has imported once its app has started and stopped for a policy:
optional packages (litellm, OpenTelemetry) must stay unimported unless the policy asks for them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

_SCRIPT = """
import asyncio, json, sys
from aiohttp import web
from gateway.policy import load_policy
from gateway.server import create_app

async def main():
    runner = web.AppRunner(create_app(load_policy(sys.argv[1])))
    await runner.setup()
    await runner.cleanup()

asyncio.run(main())
print(json.dumps(sorted(set(sys.modules) & set(sys.argv[2:]))))
"""
DEFAULT_POLICY = Path(__file__).resolve().parents[1] / "policies" / "default.yaml"


def imported(policy: Path, modules: list[str], cwd: Path) -> list[str]:
    """The ``modules`` imported (sorted) by a fresh interpreter that started a gateway for ``policy``."""
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(policy), *modules],
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]
