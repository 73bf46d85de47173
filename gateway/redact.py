"""Finding a provider's secrets in whatever the gateway is about to show, in any escaping a reader decodes.

A key can reach a client plainly, JSON-escaped (``sk\\u002d...``, ``\\/``, escaped twice), percent-encoded
or as an HTML entity, whole or in part. :class:`Redactor` decodes those escapes first, then looks for any
run of at least :data:`MIN_RUN` characters of a secret (the whole secret when it is shorter) and replaces
the escaped text of that run with ``[redacted]``. Redact before cutting text short, or a prefix leaks.

The check that finds nothing is the hot path (every relayed SSE event goes through it), so it is two C
scans: any ``MIN_RUN`` characters of a secret, written plainly, cover a whole 4-byte-aligned word of the
text that is one of the secret's 4-grams (one set lookup per word), and anything escaped has a marker.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Iterable
from typing import Any

MIN_RUN = 8
"""The shortest run of a secret that counts as a leak."""
MASK = "[redacted]"
_GRAM = MIN_RUN // 2  # MIN_RUN characters always cover one whole aligned word of this size
_ESCAPE = (  # one escaped character; groups: \uXXXX, \xXX, \/, %XX, &#xX;, &#D;
    r"\\+u([0-9a-f]{4})|\\+x([0-9a-f]{2})|\\+(/)|%(?:25)*([0-9a-f]{2})|&#x([0-9a-f]{1,6});|&#([0-9]{1,7});"
)
_ESCAPES = re.compile(_ESCAPE, re.IGNORECASE)
_MARKER = re.compile(rb"\\[ux/]|%[0-9a-f]{2}|&#", re.IGNORECASE)
"""Where any escape :data:`_ESCAPES` decodes starts (a single leading backslash is enough to find)."""


class Redactor:
    """Knows some secrets and removes them (and any ``MIN_RUN`` characters of them) from text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = tuple(dict.fromkeys(s for s in secrets if s))
        self._blocks: dict[str, list[tuple[str, int]]] = {}  # block -> (secret, offset) it starts at
        for secret in self.secrets:
            size = min(_GRAM, len(secret))
            for at in range(0, len(secret) - size + 1, size):
                self._blocks.setdefault(secret[at : at + size], []).append((secret, at))
        raw = [s.encode("utf-8") for s in self.secrets]
        self._grams = {
            int.from_bytes(r[i : i + _GRAM], sys.byteorder)
            for r in raw
            if len(r) >= MIN_RUN
            for i in range(len(r) - _GRAM + 1)
        }
        self._short = tuple(r for r in raw if len(r) < MIN_RUN)

    def __bool__(self) -> bool:
        return bool(self.secrets)

    def suspicious(self, data: bytes) -> bool:
        """Whether ``data`` may hold part of a secret; False is certain, True means look closer."""
        words = memoryview(data)[: len(data) & ~(_GRAM - 1)].cast("I")  # C unsigned int: 4 bytes
        return (
            not self._grams.isdisjoint(words)
            or _MARKER.search(data) is not None
            or any(short in data for short in self._short)
        )

    def data(self, data: bytes) -> bytes:
        """``data`` without secrets; the same object when there was nothing to remove."""
        if not self.secrets or not self.suspicious(data):
            return data
        text = data.decode("utf-8", "surrogateescape")  # gives back the same bytes, even invalid ones
        clean = self._scrub(text)
        return data if clean is text else clean.encode("utf-8", "surrogateescape")

    def text(self, text: str) -> str:
        """``text`` without secrets; the same object when there was nothing to remove."""
        if not self.secrets or not self.suspicious(text.encode("utf-8", "surrogatepass")):
            return text
        return self._scrub(text)

    def _scrub(self, text: str) -> str:
        decoded, starts, ends = _decode(text)
        spans: list[list[int]] = []
        for begin, end in sorted(self._runs(decoded)):
            if starts:
                begin, end = starts[begin], ends[end - 1]
            if spans and begin <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([begin, end])
        if not spans:
            return text
        out: list[str] = []
        last = 0
        for begin, end in spans:
            out += (text[last:begin], MASK)
            last = end
        out.append(text[last:])
        return "".join(out)

    def value(self, obj: Any) -> Any:
        """Any JSON-like value (log event, ledger record) with every string in it redacted."""
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, dict):
            return {k: self.value(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [self.value(v) for v in obj]
        if obj is None or isinstance(obj, bool | int | float):
            return obj
        return self.text(str(obj))

    def _runs(self, decoded: str) -> Iterable[tuple[int, int]]:
        """Spans of ``decoded`` that are at least ``MIN_RUN`` characters of a secret (or all of it)."""
        for block, places in self._blocks.items():
            hit = decoded.find(block)
            while hit >= 0:
                for secret, at in places:
                    back = 0
                    while back < at and hit - back > 0 and decoded[hit - back - 1] == secret[at - back - 1]:
                        back += 1
                    ahead = at + len(block)
                    end = hit + len(block)
                    while ahead < len(secret) and end < len(decoded) and decoded[end] == secret[ahead]:
                        ahead, end = ahead + 1, end + 1
                    if end - (hit - back) >= min(MIN_RUN, len(secret)):
                        yield hit - back, end
                hit = decoded.find(block, hit + 1)


def _decode(text: str) -> tuple[str, list[int], list[int]]:
    """``text`` with escapes decoded, and where each decoded character starts and ends in ``text``
    (empty lists when nothing was escaped: offsets are the same)."""
    if _ESCAPES.search(text) is None:
        return text, [], []
    chars: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    last = 0
    for match in _ESCAPES.finditer(text):
        chars.append(text[last : match.start()])
        starts.extend(range(last, match.start()))
        ends.extend(range(last + 1, match.start() + 1))
        chars.append(_unescape(match))
        starts.append(match.start())
        ends.append(match.end())
        last = match.end()
    chars.append(text[last:])
    starts.extend(range(last, len(text)))
    ends.extend(range(last + 1, len(text) + 1))
    return "".join(chars), starts, ends


def _unescape(match: re.Match[str]) -> str:
    uni, byte, slash, percent, hex_entity, dec_entity = match.groups()
    if slash:
        return "/"
    code = int(dec_entity) if dec_entity else int(uni or byte or percent or hex_entity, 16)
    return chr(code) if code < 0x110000 else "\ufffd"


class Holdback:
    """Redacts a byte stream cut at arbitrary places (a relayed file, a body of unknown type): the last
    ``hold`` bytes wait for the next chunk, so a secret split across two chunks is still found whole
    (any ``MIN_RUN`` characters of it, even with every character escaped several times over)."""

    def __init__(self, clean: Redactor, hold: int = 512) -> None:
        self.clean = clean
        self.hold = hold if clean else 0
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        """What can be sent now."""
        pending = self.clean.data(self._pending + chunk)
        cut = max(0, len(pending) - self.hold)
        self._pending = pending[cut:]
        return pending[:cut]

    def end(self) -> bytes:
        """The rest, once the stream is over."""
        rest, self._pending = self._pending, b""
        return rest


@functools.lru_cache(maxsize=64)
@functools.lru_cache(maxsize=64)
def redactor(secrets: tuple[str, ...]) -> Redactor:
    """The redactor for one provider's secrets, built once per set of secrets (not per request: its
    tables take a pass over every secret); a rotated key gets its own."""
    return Redactor(secrets)


_process: Redactor = Redactor(())


def remember(secrets: Iterable[str]) -> None:
    """Add a provider's secrets to what :func:`everywhere` removes (logs, ledger, gateway errors).

    Process-wide, like the logging configuration it serves: a log line can come from any module."""
    global _process
    known = (*_process.secrets, *secrets)
    if set(known) != set(_process.secrets):
        _process = Redactor(known)


def everywhere() -> Redactor:
    """The redactor for every secret of every provider this process has built."""
    return _process
