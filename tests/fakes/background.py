"""Run an aiohttp application in a daemon thread with its own event loop.

Synchronous code (the official ``openai.OpenAI`` client, blocking benchmarks) cannot share a loop with
the server it calls, and async tests should not have their own loop stalled by it; a private loop in a
thread serves both. ``run()`` lets a test touch server-side state from the server's own loop.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

from aiohttp import web

T = TypeVar("T")
AppSource = web.Application | Callable[[], web.Application | Awaitable[web.Application]]


class BackgroundServer:
    """Serve ``app`` (or what the ``app`` factory returns) on ``host`` at a free port until :meth:`stop`."""

    def __init__(
        self,
        app: AppSource,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        shutdown_timeout: float = 2.0,
        handler_cancellation: bool = False,
        access_log: bool = False,
        startup_timeout: float = 10.0,
    ) -> None:
        self._source = app
        self.host = host
        self.port = port
        self._shutdown_timeout = shutdown_timeout
        self._runner_kwargs: dict[str, Any] = {"handler_cancellation": handler_cancellation}
        if not access_log:
            self._runner_kwargs["access_log"] = None
        self._startup_timeout = startup_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.app: web.Application | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``; still valid after stop(), to test a dead upstream."""
        if not self.port:
            raise RuntimeError("server not started")
        return f"http://{self.host}:{self.port}"

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("server not started")
        return self._loop

    def start(self) -> Self:
        """Start serving; returns once the socket listens (re-raises a startup failure)."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._main, name=f"BackgroundServer:{self.port}", daemon=True)
        self._thread.start()
        if not self._ready.wait(self._startup_timeout):
            raise TimeoutError(f"server did not start within {self._startup_timeout}s")
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise self._error
        return self

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._setup())
        except BaseException as exc:
            self._error = exc
            loop.run_until_complete(self._teardown())
            loop.close()
            self._ready.set()
            return
        self._loop = loop
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _setup(self) -> None:
        app = self._source
        if not isinstance(app, web.Application):
            made = app()
            app = await made if inspect.isawaitable(made) else made
        self.app = app
        self._runner = web.AppRunner(app, shutdown_timeout=self._shutdown_timeout, **self._runner_kwargs)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = int(self._runner.addresses[0][1])

    async def _teardown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()  # on_shutdown / on_cleanup run, in-flight handlers get drained

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the server loop from any other thread and return its result."""
        loop = self.loop
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("run() called from the server thread would deadlock")
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    def stop(self) -> None:
        """Gracefully stop: close the listener, let in-flight requests finish, clean the app up."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._teardown(), loop).result(self._shutdown_timeout + 30)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            self._thread = self._loop = self._runner = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
