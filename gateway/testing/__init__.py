"""Test doubles shipped with the gateway: a real Redis launcher and a fake OpenAI-compatible upstream.

They live in the package (like ``aiohttp.test_utils``) so the test suite, the benchmarks and users
trying the gateway locally all share one implementation.
"""
