"""Load benchmarks for the gateway: a measurement script, not a test suite.

``python -m benchmarks`` starts a fake upstream and the gateway as subprocesses, drives the direct upstream
and the gateway with the same load tool in the same run, and reports throughput, latency percentiles, the
latency the gateway adds and its memory per worker, optionally next to the LiteLLM proxy. Nothing here
asserts a time: numbers depend on the machine, so they are reported, never judged.
"""
