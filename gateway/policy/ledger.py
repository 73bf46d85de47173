"""Schema of the ``ledger`` policy section: one record per request and the heartbeats.

The ledger is what ``llm-gateway report`` and ``llm-gateway replay`` read. With Redis it is a capped
stream shared by every worker and replica; with the memory store it is a local JSONL file, bounded by
rotation, kept in the user's state directory (not the working directory) unless ``file`` says otherwise.
Prompts stay out unless ``include_prompts`` says otherwise (they may hold code and secrets).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field

from gateway.policy.core import Section

STATE_DIR_ENV = "GATEWAY_STATE_DIR"


def state_dir() -> Path:
    """``$GATEWAY_STATE_DIR``, else ``$XDG_STATE_HOME/llm-gateway``, else ``~/.local/state/llm-gateway``
    (the XDG base directory rule); created by the first write, not here."""
    if os.environ.get(STATE_DIR_ENV):
        return Path(os.environ[STATE_DIR_ENV])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "llm-gateway"


def default_ledger_file() -> str:
    return str(state_dir() / "ledger.jsonl")


class LedgerConfig(Section):
    """The request ledger (one record per ``/v1/*`` request) and the heartbeats, read by ``llm-gateway
    report`` and ``llm-gateway replay``."""

    enabled: bool = True
    """Write the request ledger."""
    stream: str = Field("llm_ledger", min_length=1)
    """Redis stream of request records (used as given, like ``model_routing_log``)."""
    maxlen: int = Field(200_000, ge=100)
    """Approximate cap of the stream (``XADD MAXLEN ~``); a record takes about 0.5-1 KB."""
    file: str = Field(
        default_factory=default_ledger_file,
        min_length=1,
        json_schema_extra={"documented_default": "STATE_DIR/ledger.jsonl"},
    )
    """JSONL file used with the memory store (records and heartbeat lines). ``STATE_DIR`` is
    ``$GATEWAY_STATE_DIR``, else ``$XDG_STATE_HOME/llm-gateway``, else ``~/.local/state/llm-gateway``."""
    file_max_bytes: int = Field(64 * 1024 * 1024, ge=4096)
    """The file is rotated to ``FILE.1`` (then ``.2`` ...) past this size."""
    file_backups: int = Field(1, ge=0, le=20)
    """Rotated files kept; the oldest beyond this is deleted."""
    include_prompts: bool = False
    """Also record the request's messages / prompt / input. Off: records never hold prompt text."""
    queue_size: int = Field(10_000, ge=10)
    """Records waiting to be written; beyond this new records are dropped (and counted), never waited for."""
    batch_size: int = Field(500, ge=1)
    """Records written per store round trip or file append."""
    heartbeat_interval_s: float = Field(5.0, ge=0)
    """How often the gateway and the autoscaler record that they are alive; 0 turns heartbeats off."""
    heartbeat_stream: str = Field("llm_heartbeats", min_length=1)
    """Redis stream of finished heartbeat spans (a live span is a key per instance)."""
    heartbeat_maxlen: int = Field(10_000, ge=10)
    """Approximate cap of the heartbeat stream."""
    heartbeat_retain_s: float = Field(35 * 86400, gt=0)
    """How long the key of an instance that stopped beating (a crash) stays readable."""
