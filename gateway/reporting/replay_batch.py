"""Micro-batching, replayed: groups opened and sent by another ``batching`` section's window and size,
and each group's tokens estimated the way the gateway measures batch efficiency.

A group whose members are exactly those of one recorded batch (no fewer, no others) was sent as
recorded, so each member keeps its recorded share: replaying the recorded policy gives back the
recorded batch figures. Any other group is estimated. The gateway knows a member's cost alone as its
prompt estimate scaled by the batch's real prompt tokens over the batch prompt's estimate, plus its
completion tokens. The replay runs that the other way: the batch prompt is estimated from the members'
records (the shared context once, the batch instruction, each task), scaled by the members' own
real-to-estimated ratio, and split among them as the batcher splits it. Replies the model would have
botched (sent again one by one) are not modelled.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.batcher.prompt import build_batch_message, task_id
from gateway.batcher.split import apportion
from gateway.context import Usage
from gateway.policy.batching import BatchingConfig
from gateway.tokens import estimate_text

JSON_MODE_FORMAT = {"type": "json_object"}


@dataclass(slots=True)
class Member:
    item: Any
    """The replay's own record of the request, handed back when its group is sent."""
    joined: float
    prompt_estimate: int
    task_tokens: int
    alone: Usage
    batch_id: str | None = None
    """The batch that answered the request when it was recorded, if any."""
    share: Usage | None = None
    """Its recorded share of that batch."""


@dataclass(slots=True)
class Group:
    deadline: float
    members: list[Member] = field(default_factory=list)


Sent = tuple[float, list[Member]]
"""When a group was sent, and its members."""


class BatchWindow:
    def __init__(self, config: BatchingConfig) -> None:
        self.config = config
        self._groups: dict[Any, Group] = {}

    def join(self, key: Any, member: Member) -> list[Sent]:
        """Add a member to its group; the group is sent at once when it is full."""
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = Group(member.joined + self.config.window_ms / 1000)
        group.members.append(member)
        if len(group.members) >= self.config.max_batch:
            del self._groups[key]
            return [(member.joined, group.members)]
        return []

    def due(self, now: float) -> list[Sent]:
        """Groups whose window closed at or before ``now``, oldest first."""
        ready = sorted((g.deadline, k) for k, g in self._groups.items() if g.deadline <= now)
        return [(deadline, self._groups.pop(key).members) for deadline, key in ready]

    def drain(self) -> list[Sent]:
        return self.due(float("inf"))


def batch_sizes(batch_ids: Iterable[str | None]) -> Counter[str]:
    """How many recorded requests each batch answered."""
    return Counter(batch_id for batch_id in batch_ids if batch_id)


def shares(members: list[Member], json_mode: bool, recorded: Mapping[str, int]) -> list[Usage]:
    """Each member's usage in its batch (a group of one is sent alone, at its own cost); ``recorded``:
    how many members each recorded batch had (:func:`batch_sizes`)."""
    if len(members) == 1:
        return [members[0].alone]
    batch = {m.batch_id for m in members}
    same = [m.share for m in members if m.share is not None]
    if len(batch) == 1 and recorded.get(members[0].batch_id or "") == len(members) == len(same):
        return same
    first = members[0]
    shared = max(0, first.prompt_estimate - first.task_tokens)
    framing = build_batch_message([(task_id(i), "") for i in range(len(members))])["content"]
    estimate = shared + estimate_text(framing) + sum(m.task_tokens for m in members)
    if json_mode:
        estimate += estimate_text(str(JSON_MODE_FORMAT))  # counted by estimate_prompt as the gateway sends it
    scale = sum(m.alone.prompt_tokens for m in members) / max(1, sum(m.prompt_estimate for m in members))
    prompt = round(estimate * scale)
    own = [m.task_tokens for m in members]
    common = max(0, prompt - sum(own))
    prompts = apportion(prompt, [common / len(members) + o for o in own])
    return [Usage(p, m.alone.completion_tokens) for p, m in zip(prompts, members, strict=True)]
