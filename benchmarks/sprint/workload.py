"""A seeded sprint of 12 agents in two teams, as plain data: who sends what, when.

The shape follows what coding agents send in a sprint:

- each (team, role) has its own long system prompt (1.1k-1.6k tokens), shared by every request of it;
- questions repeat with a Zipf distribution (a few hot questions, a long tail), hot code too;
- CI re-runs send an earlier request again seconds later, crash retries a second after;
- developers and QA send bursts of 2-6 small refactor/test tasks at once; the others single large tasks.

Every task states the length of its answer (``[answer: N tokens]``), so the fake provider answers it
deterministically (:func:`answer_for`) and the client can check each answer it gets.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from typing import Any

TEAMS = ("alpha", "beta")
# role -> (task type, priority, share of the requests, small tasks in bursts?)
ROLES: dict[str, tuple[str, str, float, bool]] = {
    "dev": ("refactor", "P2", 0.30, True),
    "tester": ("test", "P3", 0.30, True),
    "qa": ("qa", "P1", 0.15, False),
    "arch": ("architecture", "P0", 0.10, False),
    "docs": ("creative", "P2", 0.075, False),
    "review": ("qa", "P2", 0.075, False),
}
DIRECT_MODEL = "gpt-4.1"
"""What every agent asks for without the gateway; through it they ask for ``auto`` and are routed."""
_LENGTH = re.compile(r"\[answer: (\d+) tokens\]")
_WORDS = (
    "module",
    "function",
    "typed",
    "docstring",
    "refactor",
    "invariant",
    "fixture",
    "coverage",
    "boundary",
    "parser",
    "retry",
    "cache",
    "budget",
    "stream",
    "batch",
    "context",
    "schema",
    "adapter",
    "queue",
    "handler",
    "config",
    "deploy",
    "rollback",
    "metric",
    "trace",
)


@dataclass(frozen=True, slots=True)
class SprintRequest:
    """One request of the sprint: when it is sent (seconds from the start), by whom, and its body."""

    at: float
    agent: str
    team: str
    task_type: str
    priority: str
    task: str
    system: str
    max_tokens: int | None = None
    lines: int = 0
    kind: str = "new"
    """``new``, ``repeat`` (a Zipf repeat), ``ci`` (a CI re-run) or ``retry`` (a crash retry)."""
    headers: dict[str, str] = field(default_factory=dict)

    def body(self, model: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": "system", "content": self.system}, {"role": "user", "content": self.task}],
        }
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        return body

    def request_headers(self) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Authorization": "Bearer sk-bench-client",
            "X-Agent-Id": self.agent,
            "X-Task-Type": self.task_type,
            "X-Priority": self.priority,
        }
        if self.lines:
            headers["X-Lines-Estimate"] = str(self.lines)
        return headers


def answer_for(task: str) -> str:
    """The one right answer to ``task``: its digest, then words up to the length the task states."""
    match = _LENGTH.search(task)
    tokens = int(match.group(1)) if match else 20
    digest = hashlib.sha256(task.encode()).hexdigest()[:12]
    words = [f"ans-{digest}"]
    chars = len(words[0])
    i = int(digest, 16)
    while chars < tokens * 4 - 5:
        word = _WORDS[i % len(_WORDS)]
        words.append(word)
        chars += len(word) + 1
        i //= 3
        i = i or int(digest, 16) + chars
    return " ".join(words)


def answer_tokens(task: str) -> int:
    match = _LENGTH.search(task)
    return int(match.group(1)) if match else 20


def _prose(rng: random.Random, tokens: int) -> str:
    out: list[str] = []
    chars = 0
    while chars < tokens * 4:
        sentence = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 14))).capitalize() + "."
        out.append(sentence)
        chars += len(sentence) + 1
    return " ".join(out)


class _Zipf:
    def __init__(self, rng: random.Random, n: int, s: float) -> None:
        self.rng, self.n = rng, n
        self.weights = [1 / (k + 1) ** s for k in range(n)]

    def draw(self) -> int:
        return self.rng.choices(range(self.n), self.weights)[0]


@dataclass(frozen=True, slots=True)
class SprintShape:
    """The knobs of the sprint; the defaults are the measured sprint."""

    seed: int = 7
    requests: int = 2200
    duration_s: float = 90.0
    zipf_s: float = 0.9
    questions: int = 10000
    """Distinct questions per (team, role); drawn with Zipf, they make the exact repeats."""
    ci_rerun: float = 0.04
    crash_retry: float = 0.02
    burst: tuple[int, int] = (2, 6)


def generate(shape: SprintShape | None = None) -> list[SprintRequest]:
    """The sprint's requests in sending order (same ``shape``, same list)."""
    shape = shape or SprintShape()
    rng = random.Random(shape.seed)
    systems = {
        (team, role): f"You are the {role} agent of team {team}. " + _prose(rng, rng.randint(1100, 1600))
        for team in TEAMS
        for role in ROLES
    }
    hot_code = [f"def helper_{i}(rows):\n" + _prose(rng, rng.randint(30, 120)) for i in range(40)]
    code_pick = _Zipf(rng, len(hot_code), 1.2)
    pickers = {key: _Zipf(rng, shape.questions, shape.zipf_s) for key in systems}
    questions: dict[tuple[str, str, int], tuple[str, int | None, int]] = {}
    out: list[SprintRequest] = []
    names = [(team, role) for team in TEAMS for role in ROLES]
    weights = [ROLES[role][2] for _, role in names]
    while len(out) < shape.requests:
        team, role = rng.choices(names, weights)[0]
        task_type, priority, _, small = ROLES[role]
        at = rng.uniform(0, shape.duration_s)
        count = rng.randint(*shape.burst) if small and rng.random() < 0.6 else 1
        for j in range(count):
            q = pickers[(team, role)].draw()
            if (team, role, q) not in questions:
                questions[(team, role, q)] = _question(rng, task_type, small, q, hot_code[code_pick.draw()])
            task, max_tokens, lines = questions[(team, role, q)]
            seen = any(r.task == task and r.team == team for r in out)
            req = SprintRequest(
                at + j * rng.uniform(0.0002, 0.003),
                f"{team}-{role}",
                team,
                task_type,
                priority,
                task,
                systems[(team, role)],
                max_tokens,
                lines,
                "repeat" if seen else "new",
            )
            out.append(req)
            if rng.random() < shape.ci_rerun:
                out.append(_again(req, req.at + rng.uniform(2, 12), "ci"))
            if rng.random() < shape.crash_retry:
                out.append(_again(req, req.at + rng.uniform(0.5, 1.5), "retry"))
    out = out[: shape.requests]
    out.sort(key=lambda r: r.at)
    return out


def _again(req: SprintRequest, at: float, kind: str) -> SprintRequest:
    return SprintRequest(
        at,
        req.agent,
        req.team,
        req.task_type,
        req.priority,
        req.task,
        req.system,
        req.max_tokens,
        req.lines,
        kind,
    )


def _question(
    rng: random.Random, task_type: str, small: bool, q: int, code: str
) -> tuple[str, int | None, int]:
    if small:
        tokens = rng.randint(30, 110)
        lines = rng.randint(5, 80)
        ask = f"{task_type} task {q}: " + _prose(rng, rng.randint(15, 40))
        if rng.random() < 0.3:
            ask += "\n" + code.splitlines()[0]
        max_tokens = tokens + 40 if rng.random() < 0.5 else None
    else:
        tokens = rng.randint(120, 250)
        lines = rng.randint(100, 400)
        ask = f"{task_type} question {q}: " + _prose(rng, rng.randint(40, 90)) + "\n" + code
        max_tokens = None
    return f"{ask}\n[answer: {tokens} tokens]", max_tokens, lines


BOTCH_ONE_IN = 20
"""One batch reply in this many is unusable, one more misses a task: models do that."""


def sprint_responder(body: dict[str, Any]) -> str:
    """A ``FakeUpstream.responder``: the right answer to a task, or to each task of a batch prompt
    (a few batch replies botched, as models sometimes do)."""
    from tests.fakes.batch_model import tasks_in
    from tests.fakes.upstream_bodies import last_user_text

    text = last_user_text(body.get("messages") or [])
    tasks = tasks_in(text)
    if not tasks:
        return answer_for(text)
    answers = {tid: answer_for(task) for tid, task in tasks.items()}
    botch = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % BOTCH_ONE_IN
    if botch == 0:  # prose around the JSON: the whole reply is unusable
        return "Here are the answers: " + json.dumps(answers)
    if botch == 1:  # one task forgotten
        answers.pop(sorted(answers)[-1])
    return json.dumps(answers)
