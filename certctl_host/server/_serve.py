"""Run the server with uvicorn: blocking, loopback by default, clean stop on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable

import uvicorn

from certctl_core.errors import CertctlError
from certctl_host.server._app import create_app, redact_access_log
from certctl_host.server._lock import DataDirLock
from certctl_host.server._settings import ServerSettings
from certctl_host.storage import open_store

__all__ = ["serve"]

log = logging.getLogger(__name__)


def serve(settings: ServerSettings, *, ready: Callable[[str], None] | None = None) -> None:
    """Serve until SIGINT or SIGTERM; call ``ready(base_url)`` once listening.

    Raises ConfigError / ServerKeyError when the store cannot be opened (checked before
    listening, so the message is the error itself) or another server holds the data
    directory, the CertctlError that failed the start-up (logged once, no traceback),
    and SystemExit(1) only when uvicorn could not start for another reason (the port is
    taken).
    """
    asyncio.run(_preflight(settings))
    startup_errors: list[CertctlError] = []
    config = uvicorn.Config(
        create_app(settings, startup_errors=startup_errors),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        lifespan="on",
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=max(1, int(settings.drain_timeout_seconds)),
    )
    redact_access_log()  # again: uvicorn.Config has just (re)configured its loggers
    server = uvicorn.Server(config)

    async def main() -> None:
        watcher = asyncio.create_task(_announce(server, settings, ready))
        try:
            await server.serve()
        finally:
            watcher.cancel()
        if not server.started:
            if startup_errors:
                raise startup_errors[0]
            raise SystemExit(1)

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(main())


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when it is installed (the ``server`` extra brings it): it halves the
    event loop's and the sockets' share of each OCSP request (docs/performance.md)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - the server extra installs it
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


async def _preflight(settings: ServerSettings) -> None:
    env = settings.env if settings.env is not None else os.environ
    lock = DataDirLock(settings.data_dir)
    lock.acquire()  # another server on this data directory: refuse before anything else
    try:
        url = None if settings.database_url is None else settings.database_url.reveal()
        store = await open_store(settings.data_dir, database_url=url, env=env)
        await store.aclose()
    finally:
        lock.release()


async def _announce(
    server: uvicorn.Server, settings: ServerSettings, ready: Callable[[str], None] | None
) -> None:
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.01)
    port = settings.port
    for listener in server.servers:
        for sock in listener.sockets:
            port = sock.getsockname()[1]
            break
    host = settings.host
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}"
    log.info("certctl server listening on %s", url)
    if ready is not None:
        ready(url)
