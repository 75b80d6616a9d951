"""The replica sync loop and the staleness guard in one process, on a real PostgreSQL
store: what the guard counts from, and when it is asked (ADR 0023)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import pytest

from certctl_core import CertificateRequest, TransientError
from certctl_core.host import PluginHost
from certctl_host.server._replicas import ReplicaSync
from certctl_host.server._service import IssuerService
from certctl_host.storage import KEY_ENV, ServerKey
from certctl_host.storage._postgres import PostgresStore
from tests.localca.conftest import make_csr
from tests.postgres import PostgresCluster
from tests.server.conftest import localca_body

pytestmark = pytest.mark.anyio


def key() -> ServerKey:
    return ServerKey.from_text(ServerKey.generate_text(), source=KEY_ENV)


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        if await check():
            return
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


class SlowService:
    """Stands in for IssuerService where only the loop's timing is under test: each sync
    reads the store's revision and then takes ``sync_seconds`` (a slow build)."""

    def __init__(self, store: PostgresStore, sync_seconds: float) -> None:
        self.store = store
        self.sync_seconds = sync_seconds
        self.seen_revision = -1
        self.registry = self
        self.loop: ReplicaSync | None = None
        #: (monotonic start of each sync, the loop's confirmation time at that moment)
        self.calls: list[tuple[float, float]] = []
        self.three = asyncio.Event()
        self.state: dict[str, Any] = {}
        self.retire_seconds = 0.0

    async def sync(self, *, force: bool = False) -> int:
        assert self.loop is not None
        self.calls.append((time.monotonic(), self.loop._confirmed))
        if len(self.calls) >= 3:
            self.three.set()
        revision = await self.store.config_revision()
        await asyncio.sleep(self.sync_seconds)
        self.seen_revision = revision
        return 0

    async def remote_change(self, issuer_id: str, kind: str) -> None:
        await self.sync()

    def serving_state(self) -> dict[str, Any]:
        return self.state

    async def wait_retired(self) -> None:
        await asyncio.sleep(self.retire_seconds)


async def test_a_confirmation_counts_from_the_read_not_from_the_end_of_the_build(
    postgres: PostgresCluster,
) -> None:
    async with await PostgresStore.open(postgres.new_database(), key=key()) as store:
        service = SlowService(store, sync_seconds=0.3)
        loop = ReplicaSync(
            cast("IssuerService", service), store, replica_id="t", interval=0.05, staleness=5
        )
        service.loop = loop
        task = asyncio.create_task(loop.run())
        try:
            async with asyncio.timeout(10):
                await service.three.wait()
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        # Each round's confirmation is no later than the start of that round's build.
        for (before, _), (_, confirmed) in zip(service.calls, service.calls[1:], strict=False):
            assert confirmed <= before


async def test_the_guard_is_asked_again_after_the_profile_read(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    async with await PostgresStore.open(postgres.new_database(), key=key()) as store:
        service = IssuerService(store, PluginHost.discover(), drain_timeout=1)
        loop = ReplicaSync(service, store, replica_id="t", interval=1, staleness=0.3)
        service.issue_guard = loop.guard
        try:
            await service.put("local", localca_body(tmp_path / "ca"))
            request = CertificateRequest.from_csr(make_csr())
            loop._confirmed = time.monotonic()
            await service.issue("local", request)  # fresh: issued
            read = store.profile

            async def slow_profile(name: str) -> Any:
                await asyncio.sleep(0.4)  # the database answers slowly: the bound passes
                return await read(name)

            store.profile = slow_profile  # type: ignore[method-assign]
            loop._confirmed = time.monotonic()
            with pytest.raises(TransientError, match="has not been able to confirm"):
                await service.issue("local", request)
        finally:
            await service.aclose()


async def test_a_poll_interval_longer_than_the_bound_does_not_refuse_a_healthy_replica(
    postgres: PostgresCluster,
) -> None:
    async with await PostgresStore.open(postgres.new_database(), key=key()) as store:
        service = SlowService(store, sync_seconds=0)
        loop = ReplicaSync(
            cast("IssuerService", service), store, replica_id="t", interval=5, staleness=0.6
        )
        service.loop = loop
        task = asyncio.create_task(loop.run())
        try:
            end = time.monotonic() + 1.5
            while time.monotonic() < end:
                loop.guard("any")  # never refused: the database answers all along
                await asyncio.sleep(0.05)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def test_waiting_for_old_generations_to_drain_does_not_stall_the_loop(
    postgres: PostgresCluster,
) -> None:
    """A rotation's old generation still has a slow call in flight: the new state is
    reported once it drains, while the loop keeps confirming (no 503 meanwhile)."""
    async with await PostgresStore.open(postgres.new_database(), key=key()) as store:
        service = SlowService(store, sync_seconds=0)
        loop = ReplicaSync(
            cast("IssuerService", service), store, replica_id="t", interval=0.1, staleness=0.6
        )
        service.loop = loop
        task = asyncio.create_task(loop.run())
        try:

            async def reported() -> bool:
                return bool(await store.replicas())

            await eventually(reported, 5)
            service.retire_seconds = 1.5
            service.state = {"corp": {"revision": 2, "generation": 2, "error": None}}
            end = time.monotonic() + 1.2
            while time.monotonic() < end:
                loop.guard("corp")  # never refused while the old generation drains
                await asyncio.sleep(0.05)

            async def new_state_reported() -> bool:
                return (await store.replicas())[0][3] == service.state

            await eventually(new_state_reported, 3)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def test_listing_issuers_reads_the_replica_reports_once(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    async with await PostgresStore.open(postgres.new_database(), key=key()) as store:
        service = IssuerService(store, PluginHost.discover(), drain_timeout=1)
        loop = ReplicaSync(service, store, replica_id="t", interval=1, staleness=5)
        service.replica_report = loop.report
        try:
            for name in ("a", "b", "c"):
                await service.put(name, localca_body(tmp_path / name))
            await store.report_replica("t", service.serving_state())
            reads = 0
            read = store.replicas

            async def counted() -> Any:
                nonlocal reads
                reads += 1
                return await read()

            store.replicas = counted  # type: ignore[method-assign]
            views = await service.list()
            assert reads == 1
            assert [[r["replica"] for r in v.replicas or ()] for v in views] == [["t"]] * 3
        finally:
            await service.aclose()


async def test_reports_of_replicas_gone_for_long_are_forgotten(
    postgres: PostgresCluster,
) -> None:
    async with await PostgresStore.open(postgres.new_database(), key=key()) as store:
        await store.report_replica("old", {})
        await store.report_replica("recent", {})
        url = store._url
        import psycopg

        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(
                "UPDATE replicas SET seen_at = now() - interval '2 hours' WHERE replica_id = 'old'"
            )
        service = SlowService(store, sync_seconds=0)
        loop = ReplicaSync(
            cast("IssuerService", service), store, replica_id="t", interval=0.1, staleness=10
        )
        service.loop = loop
        task = asyncio.create_task(loop.run())
        try:

            async def forgotten() -> bool:
                return [r for r, _, _, _ in await store.replicas()] == ["recent", "t"]

            await eventually(forgotten, 5)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
