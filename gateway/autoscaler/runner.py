"""``llm-gateway autoscale``: the sidecar process, wiring Redis, leader election, the loop and its HTTP port.

:func:`run` is the CLI's entry point: it blocks in its own event loop until SIGTERM or SIGINT, then
releases the leader lock (a standby takes over at once) and returns the exit status.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time

from aiohttp import web

from gateway import prometheus
from gateway.autoscaler import metrics
from gateway.autoscaler.actuators import Actuator, ActuatorSetupError, build_actuator
from gateway.autoscaler.controller import Autoscaler
from gateway.autoscaler.leader import LeaderElector, LeaderLock
from gateway.heartbeat import heartbeat_for
from gateway.logs import configure, get_logger
from gateway.policy import Policy
from gateway.store import RedisStore, connect_redis
from gateway.store.topology import Client

log = get_logger("gateway.autoscaler")

AUTOSCALER = web.AppKey("autoscaler", Autoscaler)
ELECTOR = web.AppKey("elector", LeaderElector)


def run(policy: Policy) -> int:
    """Run the sidecar until a stop signal; 0 on a graceful stop, 2 on a configuration problem."""
    configure(policy.logging.level, policy.logging.format)
    config = policy.autoscaler
    if not config.enabled:
        log.info("autoscaler.stop", reason="autoscaler.enabled is false in the policy")
        return 0
    if not policy.store.url:
        return _fail("needs Redis: set store.url in the policy (the default policy reads REDIS_URL)")
    try:
        actuators = {target.name: build_actuator(target) for target in config.targets}
    except ActuatorSetupError as exc:
        return _fail(str(exc))
    return asyncio.run(serve(policy, actuators))


async def serve(policy: Policy, actuators: dict[str, Actuator]) -> int:
    """Elect, cycle and serve ``/healthz`` + ``/metrics`` until SIGTERM/SIGINT."""
    config, prefix = policy.autoscaler, policy.store.prefix
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    client = connect_redis(policy.store)
    lock = LeaderLock(client, prefix + config.leader_lock_key, config.leader_ttl_s)
    elector = LeaderElector(lock, config.leader_ttl_s)
    autoscaler = Autoscaler(config, client, actuators, elector, prefix)
    metrics.IS_LEADER.set(0)
    runner = web.AppRunner(create_app(autoscaler, elector), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, config.listen_host, config.listen_port).start()
    except OSError as exc:
        await _close(runner, client, actuators)
        return _fail(f"cannot listen on {config.listen_host}:{config.listen_port}: {exc.strerror or exc}", 1)
    log.info(
        "autoscaler.start",
        port=config.listen_port,
        targets=[t.name for t in config.targets],
        holder=elector.lock.token,
        poll_interval_s=config.poll_interval_s,
    )
    campaign = asyncio.create_task(elector.run())
    heartbeat = heartbeat_for(policy.ledger, RedisStore(client), prefix, "autoscaler")  # uptime (report)
    if heartbeat is not None:
        heartbeat.start()
    try:
        await autoscaler.run(stop, elector.elected)
    finally:
        campaign.cancel()
        await asyncio.gather(campaign, return_exceptions=True)
        if heartbeat is not None:
            await heartbeat.stop()
        await elector.resign()
        await _close(runner, client, actuators)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("autoscaler.stop", reason="signal")
    return 0


def create_app(autoscaler: Autoscaler, elector: LeaderElector) -> web.Application:
    app = web.Application()
    app[AUTOSCALER] = autoscaler
    app[ELECTOR] = elector
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_handler)
    return app


async def healthz(request: web.Request) -> web.Response:
    """503 only when the loop itself is stuck; Redis or target outages are held and reported, not fatal."""
    autoscaler = request.app[AUTOSCALER]
    config = autoscaler.config
    age = time.monotonic() - autoscaler.last_cycle_at
    stalled = age > 3 * config.poll_interval_s + 2 * config.retry.deadline_s
    body = {
        "status": "stalled" if stalled else "ok",
        "leader": request.app[ELECTOR].is_leader,
        "last_cycle_age_s": round(age, 3),
    }
    return web.json_response(body, status=503 if stalled else 200)


async def metrics_handler(request: web.Request) -> web.Response:
    body, content_type = prometheus.render()
    return web.Response(body=body, headers={"Content-Type": content_type})


async def _close(runner: web.AppRunner, client: Client, actuators: dict[str, Actuator]) -> None:
    for actuator in actuators.values():
        await actuator.close()
    await runner.cleanup()
    await client.aclose()


def _fail(message: str, status: int = 2) -> int:
    print(f"llm-gateway autoscale: {message}", file=sys.stderr)
    return status
