"""Reading the request ledger back: ``llm-gateway report`` (KPIs) and ``llm-gateway replay`` (what-if).

``source`` reads records and heartbeats, ``outcome`` and ``kpis`` turn them into the KPIs,
``replay`` decides recorded traffic again under another policy, ``report`` / ``compare`` / ``render``
present the results. Modules are imported by the commands only, so ``serve`` never loads them.
"""
