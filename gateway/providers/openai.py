"""OpenAI-compatible providers (OpenAI, Azure OpenAI behind a compatible URL, vLLM, LM Studio, ...).

One pooled ``aiohttp.ClientSession`` per provider for the process's life; bodies are relayed as bytes so
unknown fields survive both ways.
"""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from gateway.providers.base import Provider, ProviderRequest, UpstreamReply
from gateway.telemetry import inject

_JSON = {"Content-Type": "application/json"}
_RELAYED = (
    "openai-processing-ms",
    "openai-version",
    "retry-after",
    "x-request-id",
    *(f"x-ratelimit-{f}-{r}" for f in ("limit", "remaining", "reset") for r in ("requests", "tokens")),
)
"""The allow-list of provider headers a client sees (values redacted); everything else (cookies, rate-limit
internals, whatever a provider echoes back) stays here."""
_CREDENTIAL_HEADERS = frozenset({"authorization", "api-key", "x-api-key", "proxy-authorization"})


class OpenAIProvider(Provider):
    _session: aiohttp.ClientSession | None = None

    @property
    def secrets(self) -> tuple[str, ...]:
        """The key, and any credential sent in a configured header (``api-key`` for Azure, ...)."""
        sent = (
            value.split(" ", 1)[-1].strip()
            for name, value in self.config.headers.items()
            if name.lower() in _CREDENTIAL_HEADERS
        )
        return tuple(dict.fromkeys((*super().secrets, *(v for v in sent if v))))

    async def start(self) -> None:
        cfg = self.config
        connector = aiohttp.TCPConnector(limit=cfg.max_connections, ttl_dns_cache=300, keepalive_timeout=60)
        headers = self._auth_headers()
        headers.update(cfg.headers)
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=headers,
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
        )
        self._base = cfg.base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=cfg.timeout_s, connect=cfg.connect_timeout_s)
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, connect=cfg.connect_timeout_s, sock_read=cfg.timeout_s
        )

    def _auth_headers(self) -> dict[str, str]:
        """How the key travels (a hook: other APIs put it elsewhere)."""
        return {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}

    def _target(self, request: ProviderRequest) -> tuple[str, dict[str, str]]:
        """The URL and headers of ``request`` (a hook for APIs with another layout)."""
        url = f"{self._base}/{request.path}" + (f"?{request.query}" if request.query else "")
        return url, request.headers if request.headers is not None else _JSON

    def _relayed(self, headers: Mapping[str, str]) -> dict[str, str]:
        """The provider headers a client may see."""
        kept = {h: headers[h] for h in _RELAYED if h in headers}
        kept["content-type"] = headers.get("Content-Type", "application/json")
        return kept

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, request: ProviderRequest) -> UpstreamReply:
        if self._session is None:
            raise RuntimeError(f"provider {self.name} used before start()")
        url, headers = self._target(request)
        stream = request.stream
        response = await self._session.request(
            request.method,
            url,
            data=request.body or None,
            headers=inject(headers),  # the client span's traceparent, when tracing is on
            timeout=self._stream_timeout if stream else self._timeout,
        )
        kept = self._relayed(response.headers)
        if stream and response.status == 200:

            async def release() -> None:
                # An unfinished stream closes the connection, so the provider stops generating.
                if response.content.at_eof():
                    response.release()
                else:
                    response.close()

            return UpstreamReply(200, kept, chunks=response.content.iter_any(), release=release)
        try:
            data = await response.read()
        finally:
            response.release()
        return UpstreamReply(response.status, kept, body=data)
