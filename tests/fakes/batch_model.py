"""How a model answers the gateway's micro-batch prompt, for the fake upstream.

The batcher sends several tasks in one prompt (``### Task t1`` sections, see ``gateway/batcher/prompt.py``)
and expects one JSON object keyed by task id. The plain fake would echo the whole prompt, so every batch
would fall back to single calls; with this responder the fake answers each task as it answers a single
request (``echo: <task text>``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from tests.fakes.upstream_bodies import last_user_text

_TASK = re.compile(r"### Task (t\d+)\n(.*?)(?=\n\n### Task |\Z)", re.S)


def tasks_in(text: str) -> dict[str, str]:
    """The ``{task id: task text}`` of a batch prompt (empty for any other text)."""
    return dict(_TASK.findall(text)) if "### Task " in text else {}


def batch_responder(
    render: Callable[[dict[str, str]], str] = json.dumps,
) -> Callable[[dict[str, Any]], str]:
    """A ``FakeUpstream.responder``: batch prompts get ``render(answers)``, others the usual echo."""

    def respond(body: dict[str, Any]) -> str:
        text = last_user_text(body["messages"])
        tasks = tasks_in(text)
        if not tasks:
            return "echo: " + text
        return render({tid: "echo: " + task for tid, task in tasks.items()})

    return respond
