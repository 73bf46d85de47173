"""Reading a ledger back: the Redis stream (in pages) or the JSONL file (and its rotated parts), plus the
heartbeat spans that give the uptime, filtered by sprint and time.

Records are read as :class:`gateway.ledger.schema.LedgerRecord` (any schema version) and sorted by
arrival (which is what the replay needs; records are written in completion order).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import redis

from gateway.heartbeat import HEARTBEAT_LINE, Span
from gateway.ledger.schema import LedgerRecord
from gateway.ledger.sinks import STREAM_FIELD, files_oldest_first
from gateway.policy import Policy
from gateway.reporting.progress import Progress
from gateway.store import _glob_escape
from gateway.store.topology import connect_sync, is_store_url

PAGE = 1000
_AGO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class SourceError(Exception):
    """The ledger cannot be read (no such file, Redis unreachable)."""


def parse_time(text: str, now: float | None = None) -> float:
    """An ISO 8601 date or time (UTC unless it says otherwise), or a span ago: ``30m``, ``12h``, ``7d``."""
    match = _AGO.match(text)
    if match:
        return (time.time() if now is None else now) - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"'{text}' is neither an ISO 8601 time nor a span like 30m, 12h or 7d") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


@dataclass(frozen=True, slots=True)
class Selection:
    sprint: str | None = None
    since: float | None = None
    until: float | None = None

    def keep(self, record: LedgerRecord) -> bool:
        ts = record.arrival
        if self.since is not None and ts < self.since:
            return False
        if self.until is not None and ts >= self.until:
            return False
        return self.sprint is None or record.sprint == self.sprint


@dataclass(slots=True)
class LedgerData:
    source: str
    records: list[LedgerRecord] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    unreadable: int = 0
    """Lines or entries that were not valid records (skipped)."""

    def add(self, row: Any, selection: Selection) -> None:
        if not isinstance(row, dict):
            self.unreadable += 1
        elif row.get("kind") == HEARTBEAT_LINE:
            self.spans.append(Span.from_dict(row))
        else:
            try:
                record = LedgerRecord.from_record(row)
            except (KeyError, TypeError, ValueError):
                self.unreadable += 1
                return
            if selection.keep(record):
                self.records.append(record)

    def period(self, selection: Selection) -> tuple[float, float] | None:
        """The period the figures are about: the selection's bounds, else from the first arrival to the
        last finish among the records."""
        start = selection.since
        if start is None:
            start = min((r.arrival for r in self.records), default=None)
        end = selection.until
        if end is None:
            end = max((r.arrival + r.latency_ms / 1000 for r in self.records), default=None)
        return None if start is None or end is None else (start, end)


def read_ledger(
    location: str, policy: Policy, selection: Selection, show_progress: bool = True
) -> LedgerData:
    """Read a ledger: ``location`` is a store URL (one server, cluster or Sentinel) or a file path."""
    if is_store_url(location):
        data = _read_redis(location, policy, selection, show_progress)
    else:
        data = _read_file(Path(location), selection, show_progress)
    data.records.sort(key=lambda r: r.arrival)
    return data


def default_location(policy: Policy) -> str:
    """Where the policy's gateway writes its ledger: its Redis, else its file."""
    return policy.store.url or policy.ledger.file


def _read_file(path: Path, selection: Selection, show_progress: bool) -> LedgerData:
    files = files_oldest_first(path)
    if not files:
        raise SourceError(f"no ledger file at {path}")
    data = LedgerData(str(path))
    progress = Progress("reading ledger", sum(f.stat().st_size for f in files)) if show_progress else None
    for file in files:
        with file.open("rb") as lines:
            for line in lines:
                if progress is not None:
                    progress.advance(len(line))
                if line.strip():
                    try:
                        data.add(orjson.loads(line), selection)
                    except orjson.JSONDecodeError:
                        data.unreadable += 1
    if progress is not None:
        progress.finish()
    return data


def _read_redis(url: str, policy: Policy, selection: Selection, show_progress: bool) -> LedgerData:
    config = policy.ledger
    client = connect_sync(policy.store.model_copy(update={"url": url, "socket_timeout_s": 30}))
    data = LedgerData(f"{url.split('@')[-1]} stream {config.stream}")
    try:
        total = int(client.xlen(config.stream))
        progress = Progress("reading ledger", total) if show_progress else None
        for fields in _pages(client, config.stream, selection.since):
            if progress is not None:
                progress.advance(1)
            raw = fields.get(STREAM_FIELD.encode())
            try:
                data.add(orjson.loads(raw) if raw is not None else None, selection)
            except orjson.JSONDecodeError:
                data.unreadable += 1
        if progress is not None:
            progress.finish()
        data.spans = _redis_spans(client, policy)
    except redis.RedisError as exc:
        raise SourceError(f"cannot read the ledger from {url.split('@')[-1]}: {exc}") from None
    finally:
        client.close()
    return data


def _pages(client: Any, stream: str, since: float | None) -> Iterator[dict[bytes, bytes]]:
    """Stream entries oldest first, ``PAGE`` per round trip (entry ids are write times, so a record that
    arrived after ``since`` is never before ``since``'s id)."""
    start = f"{int(since * 1000)}-0" if since is not None else "-"
    while True:
        page = client.xrange(stream, min=start, max="+", count=PAGE)
        for _, fields in page:
            yield fields
        if len(page) < PAGE:
            return
        start = "(" + page[-1][0].decode()


def _redis_spans(client: Any, policy: Policy) -> list[Span]:
    """Ended spans from the heartbeat stream, live ones from the per-instance keys."""
    rows = [fields.get(b"span") for _, fields in client.xrange(policy.ledger.heartbeat_stream)]
    pattern = _glob_escape(f"{policy.store.prefix}heartbeat:") + "*"
    rows += [client.get(key) for key in client.scan_iter(match=pattern, count=500)]
    spans = []
    for raw in rows:
        try:
            spans.append(Span.from_dict(orjson.loads(raw)))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
    return spans
