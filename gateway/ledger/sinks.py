"""Where ledger lines go: a capped Redis stream (shared by workers and replicas) or a rotated local file.

Both take a batch of encoded JSON lines, so the writer makes one round trip (or one append) per batch.
The reader (``gateway/reporting/source.py``) uses :data:`STREAM_FIELD` and :func:`files_oldest_first`,
so the layout is defined here only.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from pathlib import Path
from typing import BinaryIO

from gateway.store import Store

STREAM_FIELD = "record"
"""Each stream entry holds one JSON record in this field (typed values, same as a file line)."""


class Sink(ABC):
    reason: str
    """The ``gateway_ledger_dropped_total`` reason when a write fails."""

    @abstractmethod
    async def write(self, lines: list[bytes]) -> None: ...

    def close(self) -> None:  # noqa: B027 - only sinks that hold a resource need it
        """Release what the sink holds open."""


class StreamSink(Sink):
    reason = "store_error"

    def __init__(self, store: Store, stream: str, maxlen: int) -> None:
        self.store = store
        self.stream = stream
        self.maxlen = maxlen

    async def write(self, lines: list[bytes]) -> None:
        entries = [{STREAM_FIELD: line.decode()} for line in lines]
        await self.store.append_logs(self.stream, entries, self.maxlen)


class FileSink(Sink):
    """JSONL, appended from a worker thread (the event loop never waits on the disk), rotated by size."""

    reason = "file_error"

    def __init__(self, path: str | Path, max_bytes: int, backups: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self._size: int | None = None
        self._file: BinaryIO | None = None

    async def write(self, lines: list[bytes]) -> None:
        await asyncio.to_thread(self._append, b"".join(line + b"\n" for line in lines))

    def _append(self, data: bytes) -> None:
        if self._file is None or self._size is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("ab")
            self._size = self._file.tell()
        if self._size and self._size + len(data) > self.max_bytes:
            self.close()
            self._rotate()
            self._file = self.path.open("ab")
        self._file.write(data)
        self._file.flush()
        self._size += len(data)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _rotate(self) -> None:
        """``FILE`` becomes ``FILE.1``, ``FILE.1`` becomes ``FILE.2``...; beyond ``backups`` it is deleted."""
        for index in range(self.backups, 0, -1):
            older = _numbered(self.path, index)
            if index == self.backups:
                older.unlink(missing_ok=True)
            newer = _numbered(self.path, index - 1) if index > 1 else self.path
            if newer.exists():
                newer.replace(older)
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        self._size = 0


def files_oldest_first(path: str | Path) -> list[Path]:
    """The ledger file and its rotated predecessors, oldest first (the order records were written)."""
    base = Path(path)
    rotated: list[tuple[int, Path]] = []
    for candidate in base.parent.glob(base.name + ".*"):
        suffix = candidate.name[len(base.name) + 1 :]
        if suffix.isdigit():
            rotated.append((int(suffix), candidate))
    older = [p for _, p in sorted(rotated, reverse=True)]
    return [*older, base] if base.exists() else older


def _numbered(path: Path, index: int) -> Path:
    return path.with_name(f"{path.name}.{index}")
