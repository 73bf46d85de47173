"""Prometheus exposition shared by the gateway and the autoscaler.

With ``--workers N`` each worker is its own process; prometheus-client's multiprocess mode (enabled by
``PROMETHEUS_MULTIPROC_DIR``, set by the CLI before any metric is created) lets whichever worker is
scraped report the sum over all of them. Ratios such as the cache hit rate cannot be summed, so they are
derived at scrape time from the summed counters (``derive``).

Counters and histograms carry no ``_created`` series: they double the series count, Prometheus ignores
them for ``rate()``, and multiprocess mode cannot produce them anyway, so a scrape looks the same with
one worker or many.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import Metric

disable_created_metrics()  # read when samples are collected, so it covers metrics defined before this

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
Derive = Callable[[list[Metric]], Iterable[Metric]]


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


class _Derived:
    """A collector view: the source's metrics, then those derived from them."""

    def __init__(self, source: CollectorRegistry, derive: Derive) -> None:
        self.source, self.derive = source, derive

    def collect(self) -> Iterator[Metric]:
        families = list(self.source.collect())
        yield from families
        yield from self.derive(families)


def render(derive: Derive | None = None) -> tuple[bytes, str]:
    """The exposition text for a scrape, and its content type."""
    registry = REGISTRY
    if multiprocess_enabled():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    source = _Derived(registry, derive) if derive else registry
    return generate_latest(source), CONTENT_TYPE_LATEST


def sample_sum(families: list[Metric], name: str) -> float:
    """Sum of a counter's ``_total`` samples over all label sets (and workers)."""
    return sum(s.value for f in families if f.name == name for s in f.samples if s.name == f"{name}_total")


def mark_process_dead(pid: int) -> None:
    """Drop a finished worker's live gauges from the shared directory."""
    if multiprocess_enabled():
        multiprocess.mark_process_dead(pid)
