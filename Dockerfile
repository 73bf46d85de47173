# syntax=docker/dockerfile:1
# llm-gateway image: `docker build -t llm-gateway .`
#   docker run -p 8080:8080 -e OPENAI_API_KEY=sk-... llm-gateway                 # the gateway (serve)
#   docker run -e REDIS_URL=redis://... -e LLMGW_HEALTHCHECK_URL=http://127.0.0.1:9091/healthz \
#              llm-gateway autoscale                                              # the autoscaler sidecar
# The policy is read from $GATEWAY_CONFIG (/etc/llm-gateway/policy.yaml): mount your own over it
# (the Helm chart mounts a ConfigMap there); the image ships policies/default.yaml in its place.
# Providers of `type: litellm` (Anthropic, Gemini, Bedrock, ...) need the litellm extra in the image:
#   docker build --build-arg EXTRAS=litellm -t llm-gateway:litellm .
# Dependencies install from requirements.lock (exact versions, every file's hash), so two builds a month
# apart install the same packages; `--build-arg EXTRAS=litellm` installs requirements-litellm.lock instead.
# Labels: `--build-arg VERSION=... --build-arg REVISION=$(git rev-parse HEAD) --build-arg CREATED=$(date -u +%FT%TZ)`.
ARG PYTHON_VERSION=3.12
ARG EXTRAS=""

# Builder: the project's own wheel (its dependencies come from the lock file, below).
FROM python:${PYTHON_VERSION}-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY policies/default.yaml ./policies/default.yaml
RUN python -m pip wheel --no-deps --wheel-dir /wheels .

# Runtime: binary wheels only, no compilers and no build tools, a non-root user.
FROM python:${PYTHON_VERSION}-slim AS runtime
ARG PYTHON_VERSION
ARG VERSION=0.1.0
ARG REVISION=""
ARG CREATED=""
ARG EXTRAS=""
LABEL org.opencontainers.image.title="llm-gateway" \
      org.opencontainers.image.description="OpenAI-compatible gateway for agent fleets: caching, routing, batching and token budgets" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="python:${PYTHON_VERSION}-slim"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    GATEWAY_CONFIG=/etc/llm-gateway/policy.yaml \
    GATEWAY_STATE_DIR=/var/lib/llm-gateway \
    LLMGW_HEALTHCHECK_URL=http://127.0.0.1:8080/healthz
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin gateway \
    && install -d -o 10001 -g 10001 /var/lib/llm-gateway
RUN --mount=type=bind,source=requirements.lock,target=/locks/requirements.lock \
    --mount=type=bind,source=requirements-litellm.lock,target=/locks/requirements-litellm.lock \
    python -m pip install --require-hashes --only-binary=:all: --no-deps \
       -r "/locks/requirements${EXTRAS:+-${EXTRAS}}.lock"
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m pip install --no-index --no-deps /wheels/llm_gateway-*.whl \
    && python -m pip check
COPY --chown=root:root --chmod=0644 policies/default.yaml /etc/llm-gateway/policy.yaml
# Writable state directory (GATEWAY_STATE_DIR: the request ledger's JSONL file without Redis).
WORKDIR /var/lib/llm-gateway
USER 10001:10001
EXPOSE 8080 9091
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; url = os.environ['LLMGW_HEALTHCHECK_URL']; sys.exit(0 if urllib.request.urlopen(url, timeout=4).status == 200 else 1)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["llm-gateway"]
CMD ["serve"]
