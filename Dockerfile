# syntax=docker/dockerfile:1
# llm-gateway image: `docker build -t llm-gateway .`
#   docker run -p 8080:8080 -e OPENAI_API_KEY=sk-... llm-gateway                 # the gateway (serve)
#   docker run -e REDIS_URL=redis://... -e LLMGW_HEALTHCHECK_URL=http://127.0.0.1:9091/healthz \
#              llm-gateway autoscale                                              # the autoscaler sidecar
# The policy is read from $GATEWAY_CONFIG (/etc/llm-gateway/policy.yaml): mount your own over it
# (the Helm chart mounts a ConfigMap there); the image ships policies/default.yaml in its place.
# Providers of `type: litellm` (Anthropic, Gemini, Bedrock, ...) need the litellm extra in the image:
#   docker build --build-arg EXTRAS=litellm -t llm-gateway:litellm .
ARG PYTHON_VERSION=3.12
ARG EXTRAS=""

# Builder: build the project's wheel and the wheels of all its dependencies.
FROM python:${PYTHON_VERSION}-slim AS builder
ARG EXTRAS
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY policies/default.yaml ./policies/default.yaml
RUN python -m pip wheel --wheel-dir /wheels ".${EXTRAS:+[$EXTRAS]}"

# Runtime: the wheels only, no compilers and no build tools, a non-root user.
FROM python:${PYTHON_VERSION}-slim AS runtime
ARG EXTRAS
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
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links=/wheels "llm-gateway${EXTRAS:+[$EXTRAS]}"
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
