"""Test doubles: fake providers (OpenAI-compatible with the Responses API, Anthropic), the suite's Redis
launchers (one server, a cluster, a Sentinel group) and a background-thread server.

They are test-only and stay out of the wheel; the test suite and the benchmarks share them, and the fake
OpenAI provider runs on its own from a checkout (``python -m tests.fakes.upstream``) for trying the gateway
without a provider key.
"""
