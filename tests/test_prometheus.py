"""The exposition shared by the gateway and the autoscaler (gateway/prometheus.py)."""

from __future__ import annotations

import httpx
import openai

from tests.chart_helpers import exported_metrics


def test_a_scrape_has_no_created_series(gateway: str, client: openai.OpenAI) -> None:
    """Counters and histograms export no ``_created`` samples (one worker or many look the same)."""
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    text = httpx.get(f"{gateway}/metrics").text
    series = exported_metrics(text)
    assert "gateway_requests_total{" in text and "gateway_request_duration_seconds_bucket" in series
    assert not [line for line in text.splitlines() if "_created" in line.split("{")[0]]
