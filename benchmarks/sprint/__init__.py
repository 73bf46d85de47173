"""The sprint benchmark: a seeded multi-agent sprint sent through the gateway and straight to the provider.

``python -m benchmarks --scenario sprint`` generates the workload (:mod:`.workload`), starts two fake
providers with decode latency and prefix caching (:mod:`.provider`), replays the same requests at the
same times against each side (:mod:`.client`) and prints the KPIs both sides, measured independently
and as the gateway reports them (:mod:`.kpis`).
"""
