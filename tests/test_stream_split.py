"""The incremental splitter hands out each batch answer when its JSON string is complete."""

from __future__ import annotations

import json

from gateway.batcher.stream_split import StreamSplitter


def feed_in_pieces(splitter: StreamSplitter, text: str, size: int) -> list[list[tuple[str, str]]]:
    return [splitter.feed(text[i : i + size]) for i in range(0, len(text), size)]


def test_each_answer_leaves_when_its_string_closes() -> None:
    reply = json.dumps(
        {"t2": 'short "q" \\ \u00e9', "t1": "a much longer answer, with, commas: and } braces"}
    )
    splitter = StreamSplitter(["t1", "t2"])
    steps = feed_in_pieces(splitter, reply, 3)
    got = [pair for step in steps for pair in step]
    assert got == [("t2", 'short "q" \\ \u00e9'), ("t1", "a much longer answer, with, commas: and } braces")]
    first_done = next(i for i, step in enumerate(steps) if step)
    assert first_done < len(steps) // 2, "the first answer is out before the reply ends"
    assert not splitter.gave_up


def test_code_fence_is_allowed_prose_is_not() -> None:
    assert StreamSplitter(["t1"]).feed('```json\n{"t1": "a"}\n```') == [("t1", "a")]
    prose = StreamSplitter(["t1"])
    assert prose.feed('Sure! {"t1": "a"}') == [] and prose.gave_up


def test_non_string_values_and_unknown_ids_are_not_handed_out() -> None:
    splitter = StreamSplitter(["t1", "t2"])
    assert splitter.feed('{"t9": "x", "t1": "a", "t2": 5}') == [("t1", "a")]
    assert splitter.gave_up, "a number stops the early hand-out"
    nested = StreamSplitter(["t1"])
    assert nested.feed('{"answers": {"t1": "a"}}') == [] and nested.gave_up


def test_a_repeated_id_is_reported() -> None:
    splitter = StreamSplitter(["t1"])
    assert splitter.feed('{"t1": "a", "t1": "b"}') == [("t1", "a")]
    assert splitter.repeated == {"t1"}
