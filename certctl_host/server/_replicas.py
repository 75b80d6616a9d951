"""Several replicas on one PostgreSQL store: every replica serves the stored revision.

:class:`ReplicaSync` runs beside the server of each replica (ADR 0023):

* a dedicated LISTEN connection hears every config write (with its revision) and every
  revocation; each is handed to :meth:`IssuerService.remote_change`, the one entry point
  for what another replica changed;
* on every (re)connect a **full resync** reads every stored record (notifications sent
  while this replica was away are lost);
* every ``interval`` seconds (at most a third of ``staleness``), with or without
  notifications, the stored revision is read on the LISTEN connection (which also proves
  it alive) and applied if it moved: a lost notification cannot leave a replica stale;
* after each round this replica reports what it serves (revision, generation, error per
  issuer; a change only once the older generations have drained) to the ``replicas``
  table: ``GET /api/v1/issuers/{id}`` shows every replica's report, so an operator sees
  when an old step-ca provisioner can be removed; a report not renewed for
  ``FORGET_AFTER`` staleness bounds (1 h by default) is removed;
* **bounded staleness**: a replica that has not confirmed for ``staleness`` seconds that it
  serves the stored revision (the database is unreachable, or answers too slowly) refuses
  issuance with 503 and Retry-After, instead of issuing on a generation that may be older
  than the stored one. It resumes at the first successful round after reconnecting.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

from certctl_core.errors import CertctlError, TransientError
from certctl_host.server._service import IssuerService
from certctl_host.storage import StorageUnavailableError
from certctl_host.storage._postgres import PostgresStore

__all__ = ["ReplicaSync"]

log = logging.getLogger(__name__)

#: A replica's report is removed once it is this many staleness bounds old (1 h at 10 s).
FORGET_AFTER = 360


class ReplicaSync:
    """Keeps one replica's service in step with the shared store (see the module doc)."""

    def __init__(
        self,
        service: IssuerService,
        store: PostgresStore,
        *,
        replica_id: str,
        interval: float,
        staleness: float,
    ) -> None:
        self.service = service
        self.store = store
        self.replica_id = replica_id
        # A round at least three times per staleness bound: a healthy replica confirms
        # well within it whatever config_poll_seconds says (a longer poll interval would
        # make it refuse issuance between its own rounds).
        self.interval = min(interval, staleness / 3)
        self.staleness = staleness
        # Built from the store just now (IssuerService.start): current as of now.
        self._confirmed = time.monotonic()
        self._reported: dict[str, Any] | None = None
        self._reported_at = -math.inf
        #: the state a task reports once the older generations have drained
        self._pending: asyncio.Task[None] | None = None
        self._pending_state: dict[str, Any] | None = None
        self._writing = asyncio.Lock()

    # -- what the service asks -----------------------------------------------------------

    def guard(self, issuer_id: str) -> None:
        """Raise TransientError (503) when this replica may serve an old generation."""
        age = time.monotonic() - self._confirmed
        if age > self.staleness:
            raise TransientError(
                f"this replica ({self.replica_id}) has not been able to confirm for "
                f"{age:.0f} s that it serves the stored configuration (the database is "
                "unreachable); it issues nothing until it can",
                issuer_id=issuer_id,
                retry_after=1,
                hint="retry (another replica can serve the request); check the replica's "
                "connection to PostgreSQL",
            )

    async def report(self, issuer_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """Every replica's report for each issuer, for the API (one read of the table)."""
        rows = await self.store.replicas()
        shown: dict[str, list[dict[str, Any]]] = {}
        for issuer_id in issuer_ids:
            shown[issuer_id] = []
            for replica, seen_at, age, served in rows:
                state = served.get(issuer_id)
                shown[issuer_id].append(
                    {
                        "replica": replica,
                        "revision": None if state is None else state.get("revision"),
                        "generation": None if state is None else state.get("generation"),
                        "error": None if state is None else state.get("error"),
                        "seen_at": seen_at.isoformat(),
                        "alive": age <= self.staleness,
                    }
                )
        return shown

    # -- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        """Until cancelled: listen, resync on connect, check every interval, report."""
        try:
            await self._run()
        finally:
            self._stop_reporting()

    async def _run(self) -> None:
        pause = 0.1
        while True:
            try:
                async with self.store.listener() as feed:
                    # A confirmation is dated when the store was read, not when the build
                    # finished: the guard's bound counts from what the store said then.
                    read_at = time.monotonic()
                    await self.service.sync(force=True)
                    self._confirmed = read_at
                    await self._report(force=True)
                    log.info("replica %s: listening for changes; resynced", self.replica_id)
                    pause = 0.1
                    while True:
                        changes = await feed.changes(self.interval)
                        for change in changes:
                            if change.kind == "revocation":
                                await self.service.remote_change(change.key, "revocation")
                        read_at = time.monotonic()
                        stored = await feed.revision()
                        for key in sorted({c.key for c in changes if c.kind == "config"}):
                            await self.service.remote_change(key, "config")
                        # A lost notification: the revision moved all the same.
                        await self.service.sync()
                        if stored <= self.service.seen_revision:
                            self._confirmed = read_at
                        await self._report()
            except asyncio.CancelledError:
                raise
            except CertctlError as exc:
                log.warning(
                    "replica %s: lost the store (%s); reconnecting in %.1f s",
                    self.replica_id,
                    exc.message,
                    pause,
                )
            except Exception as exc:  # noqa: BLE001 - the loop must outlive a bug
                # No traceback (it could show a config); issuance stays refused by the
                # staleness guard until a round succeeds.
                log.error(  # noqa: TRY400
                    "replica %s: syncing failed unexpectedly (%s); retrying in %.1f s",
                    self.replica_id,
                    type(exc).__name__,
                    pause,
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)

    async def _report(self, *, force: bool = False) -> None:
        state = self.service.serving_state()
        if state != self._reported and state != self._pending_state:
            # "Serving revision N" must mean no call still runs on an older generation
            # (the operator removes the old provisioner once every replica reports N):
            # the new state is reported once the old generations have drained, by a task
            # of its own, so that this loop keeps reading changes and confirming meanwhile.
            if self._pending is not None:
                self._pending.cancel()
            self._pending_state = state
            self._pending = asyncio.create_task(self._report_drained(state))
        due = time.monotonic() - self._reported_at >= self.staleness / 3
        if self._reported is not None and (force or due):
            # Alive: what this replica last reported still holds until the task reports.
            async with self._writing:
                await self._write(self._reported)

    async def _report_drained(self, state: dict[str, Any]) -> None:
        try:
            await self.service.registry.wait_retired()
            async with self._writing:  # not overtaken by an older state's write
                await self._write(state)
                self._reported = state
        except Exception as exc:  # noqa: BLE001 - reported again at the next round
            text = exc.message if isinstance(exc, CertctlError) else type(exc).__name__
            log.warning("replica %s: could not report (%s)", self.replica_id, text)
        self._pending_state = None

    async def _write(self, state: dict[str, Any]) -> None:
        await self.store.report_replica(self.replica_id, state)
        self._reported_at = time.monotonic()
        # Reports of replicas gone for good (the default id has the pid in it: every
        # restart is a new replica) would stay forever otherwise.
        gone = await self.store.forget_replicas(FORGET_AFTER * self.staleness)
        if gone:
            log.info("replica %s: forgot %d replica(s) not seen for long", self.replica_id, gone)

    def _stop_reporting(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        self._pending_state = None

    async def leave(self) -> None:
        """Remove this replica's report (a clean stop); failures are only logged."""
        try:
            await self.store.forget_replica(self.replica_id)
        except StorageUnavailableError as exc:
            log.info("replica %s: its report stays: %s", self.replica_id, exc.message)
