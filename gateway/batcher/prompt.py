"""The batch prompt: the shared context once, then numbered tasks, answered as one JSON object.

Parsing is strict: an answer counts only when its task id appears exactly once with a string value.
Anything else sends the affected tasks again one by one, so a caller never gets another's answer.
"""

from __future__ import annotations

import json
from typing import Any

INSTRUCTION = (
    "You will receive {n} independent tasks. Answer each one fully, exactly as you would if it were the "
    "only task. Reply with only a JSON object that maps every task id to its complete answer as a string, "
    'for example {{"t1": "answer one", "t2": "answer two"}}. Every task id must appear exactly once.'
)


def task_id(position: int) -> str:
    return f"t{position + 1}"


def build_batch_message(tasks: list[tuple[str, str]]) -> dict[str, str]:
    """One user message holding every ``(task id, task text)``."""
    parts = [INSTRUCTION.format(n=len(tasks))]
    parts += [f"### Task {tid}\n{text}" for tid, text in tasks]
    return {"role": "user", "content": "\n\n".join(parts)}


def parse_answers(content: str | None, expected: list[str]) -> dict[str, str]:
    """The answers that are unambiguous: expected id, present once, a string. Others are left out."""
    if not content:
        return {}
    text = content.strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    pairs: list[tuple[str, Any]] = []

    def keep_pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        pairs.extend(items)
        return dict(items)

    try:
        top = json.loads(text, object_pairs_hook=keep_pairs)
    except (json.JSONDecodeError, RecursionError):
        return {}
    if not isinstance(top, dict):
        return {}
    if isinstance(top.get("answers"), dict) and not (set(top) & set(expected)):
        top = top["answers"]
    seen: dict[str, int] = {}
    for key, _ in pairs:
        seen[key] = seen.get(key, 0) + 1
    return {
        tid: top[tid] for tid in expected if seen.get(tid) == 1 and isinstance(top.get(tid), str) and top[tid]
    }
