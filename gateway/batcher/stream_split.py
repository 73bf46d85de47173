"""Answers out of a streamed batch reply the moment each is complete: an incremental JSON splitter.

The batch reply is one JSON object of task id to answer string (``gateway/batcher/prompt.py``). Fed the
content as it streams, :class:`StreamSplitter` returns each ``(task id, answer)`` as soon as the
answer's closing quote arrives, so a member waits for the answers written before its own, not for the
whole reply. Only the strict shape is followed: an object of string values, optionally in a code
fence. Anything else (a nested object, a number, prose before the ``{``) stops the early hand-out;
the caller then parses the whole text strictly at the end, as for a reply read whole. An id already
handed out that appears again is reported in :attr:`StreamSplitter.repeated`.
"""

from __future__ import annotations

import json
from enum import Enum, auto


class _State(Enum):
    BEFORE = auto()
    KEY_OR_END = auto()
    KEY = auto()
    COLON = auto()
    VALUE = auto()
    STRING = auto()
    COMMA_OR_END = auto()
    DONE = auto()
    GAVE_UP = auto()


_PREAMBLE = frozenset(" \t\r\n`json")


class StreamSplitter:
    def __init__(self, expected: list[str]) -> None:
        self.expected = set(expected)
        self.given: set[str] = set()
        self.repeated: set[str] = set()
        self._state = _State.BEFORE
        self._buffer: list[str] = []
        self._escaped = False
        self._key = ""

    @property
    def gave_up(self) -> bool:
        return self._state is _State.GAVE_UP

    def feed(self, text: str) -> list[tuple[str, str]]:
        """The answers completed by this piece of content, in the order they completed."""
        done: list[tuple[str, str]] = []
        for char in text:
            if self._state in (_State.DONE, _State.GAVE_UP):
                break
            self._step(char, done)
        return done

    def _step(self, char: str, done: list[tuple[str, str]]) -> None:
        state = self._state
        if state in (_State.KEY, _State.STRING):
            if self._escaped:
                self._escaped = False
            elif char == "\\":
                self._escaped = True
            elif char == '"':
                self._close_string(done)
                return
            self._buffer.append(char)
            return
        if char.isspace():
            return
        if state is _State.BEFORE:
            if char == "{":
                self._state = _State.KEY_OR_END
            elif char not in _PREAMBLE:
                self._state = _State.GAVE_UP
        elif state is _State.KEY_OR_END and char == '"':
            self._state, self._buffer = _State.KEY, []
        elif state is _State.KEY_OR_END and char == "}":
            self._state = _State.DONE
        elif state is _State.COLON and char == ":":
            self._state = _State.VALUE
        elif state is _State.VALUE and char == '"':
            self._state, self._buffer = _State.STRING, []
        elif state is _State.COMMA_OR_END and char == ",":
            self._state = _State.KEY_OR_END
        elif state is _State.COMMA_OR_END and char == "}":
            self._state = _State.DONE
        else:
            self._state = _State.GAVE_UP

    def _close_string(self, done: list[tuple[str, str]]) -> None:
        try:
            text = json.loads('"' + "".join(self._buffer) + '"')
        except json.JSONDecodeError:
            self._state = _State.GAVE_UP
            return
        if self._state is _State.KEY:
            self._key, self._state = text, _State.COLON
            return
        self._state = _State.COMMA_OR_END
        key = self._key
        if key in self.given:
            self.repeated.add(key)
        elif key in self.expected and text:
            self.given.add(key)
            done.append((key, text))
