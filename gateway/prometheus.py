"""Prometheus exposition shared by the gateway and the autoscaler.

With ``--workers N`` each worker is its own process; prometheus-client's multiprocess mode (enabled by
``PROMETHEUS_MULTIPROC_DIR``, set by the CLI before any metric is created) lets whichever worker is
scraped report the sum over all of them.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def render() -> tuple[bytes, str]:
    """The exposition text for a scrape, and its content type."""
    if multiprocess_enabled():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    """Drop a finished worker's live gauges from the shared directory."""
    if multiprocess_enabled():
        multiprocess.mark_process_dead(pid)
