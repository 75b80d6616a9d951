"""The ASGI application: routes, problem documents for every error, and the lifespan
that opens the store, discovers plugins and builds the stored issuers."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from certctl_core.errors import CertctlError
from certctl_core.host import PluginHost
from certctl_host.server._lock import DataDirLock
from certctl_host.server._ocsp_fast import OCSP_PREFIX, OCSPFastPath
from certctl_host.server._problem import Problem, error_response
from certctl_host.server._routes import Endpoints
from certctl_host.server._service import IssuerService
from certctl_host.server._settings import ServerSettings
from certctl_host.storage import open_store

__all__ = ["create_app", "redact_access_log"]

log = logging.getLogger(__name__)


class _NoQueryStrings(logging.Filter):
    """Drops the query string from uvicorn's access log lines: a client that puts a token
    (or anything else) in the URL must not find it in the log. The path stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            path, mark, _query = args[2].partition("?")
            if mark:
                record.args = (args[0], args[1], f"{path}?[redacted]", args[3], args[4])
        return True


def redact_access_log(logger_name: str = "uvicorn.access") -> None:
    """Install the query-string filter on uvicorn's access logger (idempotent)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, _NoQueryStrings) for f in logger.filters):
        logger.addFilter(_NoQueryStrings())


def create_app(
    settings: ServerSettings,
    *,
    plugins: Callable[[], PluginHost] = PluginHost.discover,
    startup_errors: list[CertctlError] | None = None,
) -> ASGIApp:
    """The reference certctl-server as an ASGI application.

    Nothing happens until the ASGI lifespan starts: then the store in
    ``settings.data_dir`` is opened (server key created on first start), plugins are
    discovered, an empty store is seeded from the environment (``ConnectorType.env_seed``,
    e.g. ``CERTCTL_STEPCA_URL``) and every stored issuer is built. In the main thread,
    SIGHUP then reloads: every issuer whose files changed is rebuilt (ADR 0022). On
    shutdown connectors are drained and closed and the store is closed. A host that
    mounts this app must run its lifespan.

    A certctl error at start-up (the store cannot be opened or read) fails the lifespan
    with its message logged once, without a traceback, and appended to
    ``startup_errors`` if given (``serve()`` raises it).

    uvicorn's access log (logger ``uvicorn.access``) is filtered to drop query strings.

    Well-formed OCSP requests are answered before Starlette's middleware stack (ADR 0026):
    a host that wraps this app in its own ASGI middleware still sees them; middleware
    added inside Starlette does not.
    """
    redact_access_log()  # whoever runs the app with uvicorn: no query strings in its log
    failures: list[CertctlError] = startup_errors if startup_errors is not None else []
    state: dict[str, IssuerService] = {}

    def service() -> IssuerService:
        try:
            return state["service"]
        except KeyError:
            raise Problem(
                503,
                "the server is starting or stopping",
                slug="unavailable",
                headers={"Retry-After": "1"},
            ) from None

    endpoints = Endpoints(settings, service)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        env = settings.env if settings.env is not None else os.environ
        lock = DataDirLock(settings.data_dir)
        try:
            lock.acquire()
            try:
                store = await open_store(
                    settings.data_dir,
                    database_url=(
                        None if settings.database_url is None else settings.database_url.reveal()
                    ),
                    env=env,
                )
            except BaseException:
                lock.release()
                raise
        except CertctlError as exc:
            failures.append(exc)
            log.error("certctl server cannot start: %s", exc)  # noqa: TRY400
            raise
        issuers = IssuerService(
            store,
            plugins(),
            drain_timeout=settings.drain_timeout_seconds,
            shared_store=settings.database_url is not None,
        )
        watcher: asyncio.Task[None] | None = None
        replicas = None
        hangup = False
        try:
            try:
                await issuers.seed_from_env(env)
                await issuers.start()
            except CertctlError as exc:
                failures.append(exc)
                log.error("certctl server cannot start: %s", exc)  # noqa: TRY400
                raise
            state["service"] = issuers
            if settings.database_url is not None:
                # Several replicas on PostgreSQL: LISTEN/NOTIFY, resync, bounded staleness.
                from certctl_host.server._replicas import ReplicaSync
                from certctl_host.storage._postgres import PostgresStore

                assert isinstance(store, PostgresStore)
                replicas = ReplicaSync(
                    issuers,
                    store,
                    replica_id=settings.replica_id,
                    interval=settings.config_poll_seconds or 2.0,
                    staleness=settings.replica_staleness_seconds,
                )
                issuers.issue_guard = replicas.guard
                issuers.replica_report = replicas.report
                watcher = asyncio.create_task(replicas.run())
            elif settings.config_poll_seconds > 0:
                watcher = asyncio.create_task(_watch(issuers, settings.config_poll_seconds))
            hangup = _on_sighup(issuers)
            log.info("certctl server ready; data in %s", settings.data_dir)
            yield
        finally:
            if hangup:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            state.pop("service", None)
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            if replicas is not None:
                await replicas.leave()
            try:
                await issuers.aclose()
            finally:
                try:
                    await store.aclose()
                finally:
                    lock.release()

    app = _App(
        routes=endpoints.routes(),
        lifespan=lifespan,
        exception_handlers={
            Problem: error_response,
            CertctlError: error_response,
            HTTPException: error_response,
            Exception: error_response,
        },
    )

    app.startup_errors = failures
    # OCSP requests are answered in front of the framework (ADR 0026); the rest, and
    # every refusal with a problem document, goes on to Starlette.
    app.ocsp = OCSPFastPath(
        functools.partial(Starlette.__call__, app),
        lambda: state.get("service"),
        endpoints.limiter,
        settings.max_ocsp_request_bytes,
    )
    return app


class _App(Starlette):
    """Starlette, except that a start-up failed by a certctl error (already logged with
    its message and hint) is reported to the host without the formatted traceback."""

    startup_errors: list[CertctlError]
    ocsp: OCSPFastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ocsp = self.ocsp
        if ocsp is not None and scope["type"] == "http" and scope["path"].startswith(OCSP_PREFIX):
            await ocsp(scope, receive, send)
            return
        if scope["type"] != "lifespan":
            await super().__call__(scope, receive, send)
            return

        async def send_without_traceback(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed" and self.startup_errors:
                message = {"type": "lifespan.startup.failed", "message": ""}
            await send(message)

        await super().__call__(scope, receive, send_without_traceback)


def _on_sighup(issuers: IssuerService) -> bool:
    """Reload on SIGHUP (main thread, POSIX only); True when the handler is installed."""
    if not hasattr(signal, "SIGHUP") or threading.current_thread() is not threading.main_thread():
        return False
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()

    async def reload() -> None:
        log.info("SIGHUP: reloading issuers (rebuilding those whose files changed)")
        try:
            outcomes = await issuers.reload()
        except CertctlError as exc:
            log.error("SIGHUP: reloading failed: %s", exc)  # noqa: TRY400
            return
        rebuilt = sum(1 for v in outcomes.values() if v == "rebuilt")
        failed = sum(1 for v in outcomes.values() if v.startswith("failed"))
        log.info("SIGHUP: %d issuer(s) rebuilt, %d failed", rebuilt, failed)

    def handle() -> None:
        task = loop.create_task(reload())
        pending.add(task)
        task.add_done_callback(pending.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, handle)
    except (NotImplementedError, RuntimeError, ValueError):
        return False
    return True


async def _watch(issuers: IssuerService, interval: float) -> None:
    """Apply configs that other processes (replicas, the CLI) write to the store."""
    while True:
        await asyncio.sleep(interval)
        try:
            changed = await issuers.sync()
        except CertctlError as exc:
            log.warning("reading issuer configs from the store failed: %s", exc)
        else:
            if changed:
                log.info("applied %d issuer change(s) written by another process", changed)
