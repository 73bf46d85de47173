"""OpenTelemetry traces: what an OTLP/HTTP receiver gets from a gateway with ``telemetry.otlp`` set, and
that with it unset OpenTelemetry is never imported and every span is the shared null one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp import web

from gateway.policy.telemetry import TelemetryConfig
from gateway.telemetry import NULL_SPAN, OFF, telemetry_for
from tests.conftest import GATEWAY_KEY, base_policy
from tests.fakes.background import BackgroundServer
from tests.fakes.upstream import FakeUpstream
from tests.startup_imports import DEFAULT_POLICY, imported

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_PARENT = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_PARENT}-01"
MESSAGES = [{"role": "user", "content": "Trace this request."}]


class Receiver:
    """An OTLP/HTTP traces endpoint: decodes every ``POST /v1/traces`` the way a collector does."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.content_types: list[str] = []
        self._lock = threading.Lock()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/traces", self._export)
        return app

    async def _export(self, request: web.Request) -> web.Response:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        found = []
        for resource_spans in message.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    found.append(
                        {
                            "name": span.name,
                            "kind": span.kind,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_span_id": span.parent_span_id.hex(),
                            "attributes": _attributes(span.attributes),
                            "resource": resource,
                        }
                    )
        with self._lock:
            self.spans.extend(found)
            self.content_types.append(request.content_type)
        body = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=body, content_type="application/x-protobuf")

    def wait_for(self, count: int) -> list[dict[str, Any]]:
        """The spans received, once there are ``count`` of them (the exporter sends in the background)."""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.spans) >= count:
                    return list(self.spans)
            time.sleep(0.02)
        raise AssertionError(f"expected {count} spans, received {self.spans}")


def _attributes(pairs: Any) -> dict[str, Any]:
    values = {}
    for pair in pairs:
        kind = pair.value.WhichOneof("value")
        values[pair.key] = getattr(pair.value, kind) if kind else None
    return values


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    found = Receiver()
    server = BackgroundServer(found.app()).start()
    yield found, server.url
    server.stop()


def traced_policy(upstream: str, receiver_url: str) -> dict[str, Any]:
    otlp = {"endpoint": receiver_url + "/v1/traces", "service_name": "gw-test", "schedule_delay_ms": 20}
    return base_policy(upstream, cache={"enabled": True}, telemetry={"otlp": otlp})


def test_spans_reach_the_receiver_in_the_clients_trace_with_genai_and_gateway_attributes(
    fake_upstream: FakeUpstream,
    start_gateway: Callable[..., str],
    receiver: tuple[Receiver, str],
) -> None:
    found, receiver_url = receiver
    url = start_gateway(traced_policy(fake_upstream.url, receiver_url))  # type: ignore[attr-defined]
    headers = {"Authorization": f"Bearer {GATEWAY_KEY}", "traceparent": TRACEPARENT}
    body = {"model": "gpt-4o-mini", "messages": MESSAGES}
    first = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=10)
    second = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=10)
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")
    usage = first.json()["usage"]

    spans = found.wait_for(3)
    assert set(found.content_types) == {"application/x-protobuf"}
    servers = [s for s in spans if s["kind"] == 2]  # SPAN_KIND_SERVER
    clients = [s for s in spans if s["kind"] == 3]  # SPAN_KIND_CLIENT
    assert len(servers) == 2 and len(clients) == 1, "one server span per request, one client span per call"
    assert {s["trace_id"] for s in spans} == {CLIENT_TRACE}
    assert {s["parent_span_id"] for s in servers} == {CLIENT_PARENT}
    miss, hit = sorted(servers, key=lambda s: s["attributes"]["llm_gateway.cache.status"] != "MISS")
    client = clients[0]
    assert client["parent_span_id"] == miss["span_id"]
    assert client["name"] == "chat gpt-4o-mini" and miss["name"] == "POST /v1/chat/completions"
    assert client["resource"]["service.name"] == "gw-test"

    expected_usage = {
        "gen_ai.usage.input_tokens": usage["prompt_tokens"],
        "gen_ai.usage.output_tokens": usage["completion_tokens"],
    }
    assert client["attributes"] == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini",
        "http.response.status_code": 200,
        **expected_usage,
    }
    for span, cache in ((miss, "MISS"), (hit, "HIT")):
        attributes = span["attributes"]
        assert attributes["llm_gateway.cache.status"] == cache
        assert attributes["llm_gateway.agent"] == "agent-1" and attributes["llm_gateway.team"] == "backend"
        assert attributes["llm_gateway.route.reason"] == first.headers["X-Gateway-Route-Reason"]
        assert attributes["gen_ai.response.model"] == "gpt-4o-mini"
        assert attributes["http.response.status_code"] == 200
        assert {k: attributes[k] for k in expected_usage} == expected_usage

    sent = fake_upstream.requests
    assert len(sent) == 1
    _, trace, parent, _ = sent[0].headers["traceparent"].split("-")
    assert (trace, parent) == (CLIENT_TRACE, client["span_id"]), "the provider sees the client span"


def test_the_request_log_line_of_llm_gateway_serve_carries_the_trace_id(
    fake_upstream: FakeUpstream,
    policy_file: Callable[..., Path],
    serve: Callable[..., tuple[subprocess.Popen[str], str]],
    receiver: tuple[Receiver, str],
) -> None:
    found, receiver_url = receiver
    otlp = {"endpoint": receiver_url + "/v1/traces", "schedule_delay_ms": 20}
    proc, url = serve(policy_file(telemetry={"otlp": otlp}, logging={"format": "json"}))
    headers = {"Authorization": f"Bearer {GATEWAY_KEY}", "traceparent": TRACEPARENT}
    body = {"model": "gpt-4o-mini", "messages": MESSAGES}
    assert httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=10).status_code == 200
    found.wait_for(2)  # both spans have ended, so the request line is written
    log = Path(proc.log_path).read_text()  # type: ignore[attr-defined]
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("event") == "request"]
    assert len(requests) == 1 and requests[0]["trace_id"] == CLIENT_TRACE
    assert all("trace_id" not in line for line in lines if line.get("event") in ("serving", "started"))


def test_a_streamed_request_without_a_valid_traceparent_starts_its_own_trace(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str], receiver: tuple[Receiver, str]
) -> None:
    found, receiver_url = receiver
    url = start_gateway(traced_policy(fake_upstream.url, receiver_url))  # type: ignore[attr-defined]
    options = {"include_usage": True}
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True, "stream_options": options}
    headers = {"Authorization": f"Bearer {GATEWAY_KEY}", "traceparent": "00-not-a-trace-01"}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers) as reply:
        events = [json.loads(line[6:]) for line in reply.iter_lines() if line.startswith("data: {")]
    assert reply.status_code == 200
    usage = next(event["usage"] for event in events if event.get("usage"))
    server, client = sorted(found.wait_for(2), key=lambda s: s["kind"])
    assert server["parent_span_id"] == "" and client["parent_span_id"] == server["span_id"]
    assert server["trace_id"] == client["trace_id"] != CLIENT_TRACE
    assert fake_upstream.requests[0].headers["traceparent"].split("-")[1] == server["trace_id"]
    for span in (server, client):
        assert span["attributes"]["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
        assert span["attributes"]["gen_ai.usage.output_tokens"] == usage["completion_tokens"]


def test_telemetry_off_is_the_shared_null_span() -> None:
    assert telemetry_for(TelemetryConfig()) is OFF
    assert OFF.request_span({"traceparent": TRACEPARENT}, "/v1/chat/completions") is NULL_SPAN
    assert OFF.provider_span("openai", "gpt-4o-mini", "chat") is NULL_SPAN
    with NULL_SPAN as span:
        span.annotate(cache="HIT", input_tokens=3)  # nothing to set, nothing raised


TRACING = [
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.sdk.trace",
    "opentelemetry.trace.propagation.tracecontext",
]
"""What tracing imports. (redis-py imports OpenTelemetry's metrics API by itself when it is installed.)"""


def test_opentelemetry_is_imported_only_when_telemetry_is_configured(tmp_path: Path) -> None:
    assert imported(DEFAULT_POLICY, TRACING, tmp_path) == []
    traced = yaml.safe_load(DEFAULT_POLICY.read_text())
    traced["telemetry"] = {"otlp": {"endpoint": "http://127.0.0.1:9/v1/traces", "timeout_s": 0.5}}
    (tmp_path / "traced.yaml").write_text(yaml.safe_dump(traced))
    assert imported(tmp_path / "traced.yaml", TRACING, tmp_path) == TRACING


def test_serve_and_check_config_refuse_tracing_without_opentelemetry(tmp_path: Path) -> None:
    shim = tmp_path / "shim"
    shim.mkdir()  # `import opentelemetry.sdk` and the exporter now fail, as if the extra were not installed
    (shim / "sitecustomize.py").write_text(
        'import sys\nsys.modules["opentelemetry.sdk"] = sys.modules["opentelemetry.exporter"] = None\n'
    )
    path = os.pathsep.join(filter(None, [str(shim), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    otlp = {"endpoint": "http://127.0.0.1:9/v1/traces"}
    policy = tmp_path / "traced.yaml"
    policy.write_text(yaml.safe_dump(base_policy("http://127.0.0.1:9", telemetry={"otlp": otlp})))
    for args in (["check-config", str(policy)], ["serve", "--config", str(policy), "--port", "9"]):
        command = [sys.executable, "-m", "gateway", *args]
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
        assert result.returncode == 2 and result.stdout == "", (args, result.stderr)
        assert "'telemetry.otlp'" in result.stderr and "llm-gateway[otel]" in result.stderr
    plain = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(policy)], capture_output=True, text=True
    )
    assert plain.returncode == 0, plain.stderr
