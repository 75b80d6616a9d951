"""The ``localca`` plugin: registers the connector type and its contract-test harness.

Entry point ``localca = "certctl_localca.plugin"`` in the ``certctl.connectors`` group.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import sqlite3
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509

from certctl_core import (
    ConnectorRegistrar,
    ConnectorType,
    HarnessRegistrar,
    IssuerPort,
    RevocationReason,
    hookimpl,
)
from certctl_core.domain import format_serial_hex
from certctl_localca._config import _BUILTIN_PROFILES, EXTENDED_KEY_USAGES
from certctl_localca._connector import CAPABILITIES, build_localca_issuer
from certctl_localca._ledger import LEDGER_FILE
from certctl_localca._pki import BACKDATE, ROOT_FILES

if TYPE_CHECKING:
    from certctl_contracts.harness import LiveIssuer

__all__ = ["CONNECTOR_TYPE", "certctl_register_connectors", "certctl_register_harnesses", "harness"]

__version__ = "0.1.0"

CONNECTOR_TYPE = ConnectorType(
    name="localca",
    factory=build_localca_issuer,
    version=__version__,
    description="A certificate authority in this process: issues certificates and signs "
    "CRLs and OCSP responses from a local state directory",
    capabilities=CAPABILITIES,
    secret_fields=frozenset({"key_password", "ledger_url"}),
    single_process=True,
    shared_state_fields=frozenset({"ledger_url"}),
    file_fields=frozenset({"key_password_file", "ca_cert_file", "ca_key_file"}),
    secret_scope=frozenset({"state_dir", "ca_cert_file", "ca_key_file", "ledger_url"}),
    identity_fields=frozenset({"state_dir", "ca_cert_file", "ca_key_file", "ledger_url"}),
)

#: The default lifetime the harness's connector gives (its ``validity_days``).
HARNESS_VALIDITY = dt.timedelta(days=90)


@hookimpl
def certctl_register_connectors(registrar: ConnectorRegistrar) -> None:
    registrar.add(CONNECTOR_TYPE)


@hookimpl
def certctl_register_harnesses(registrar: HarnessRegistrar) -> None:
    registrar.add("localca", harness)


def harness(tmp_path: Path) -> AbstractAsyncContextManager[LiveIssuer]:
    """A live local CA on a fresh state directory under ``tmp_path``, closed on exit.

    Side channels read the state directory, never the connector: the root from
    ``root.pem``, revocations from the ledger. Faults lock the ledger (writes wait for
    SQLite's busy timeout, then fail) and, for ``unreachable``, move the state directory
    away; both are undone on exit.
    """
    return _harness(tmp_path)


class _LedgerLock:
    """Holds an exclusive write lock on the ledger from another connection."""

    def __init__(self, state_dir: Path) -> None:
        self._path = state_dir / LEDGER_FILE
        self._conn: sqlite3.Connection | None = None

    def acquire(self) -> None:
        self._conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        self._conn.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        if self._conn is not None:
            self._conn.execute("ROLLBACK")
            self._conn.close()
            self._conn = None


class _LocalCAFaults:
    def __init__(self, state_dir: Path) -> None:
        self._state_dir = state_dir

    @asynccontextmanager
    async def _locked(self, *, move_away: bool = False) -> AsyncIterator[None]:
        lock = _LedgerLock(self._state_dir)
        await asyncio.to_thread(lock.acquire)
        moved = self._state_dir.with_name(self._state_dir.name + ".gone")
        if move_away:
            self._state_dir.rename(moved)
        try:
            yield
        finally:
            if move_away:
                moved.rename(self._state_dir)
            await asyncio.to_thread(lock.release)

    def unreachable(self) -> AbstractAsyncContextManager[None]:
        return self._locked(move_away=True)

    def erroring(self) -> AbstractAsyncContextManager[None]:
        return self._locked()

    @asynccontextmanager
    async def slow(self, seconds: float) -> AsyncIterator[None]:
        lock = _LedgerLock(self._state_dir)
        await asyncio.to_thread(lock.acquire)
        loop = asyncio.get_running_loop()
        handle = loop.call_later(seconds, lock.release)
        try:
            yield
        finally:
            handle.cancel()
            lock.release()


@asynccontextmanager
async def _harness(tmp_path: Path) -> AsyncIterator[LiveIssuer]:
    from certctl_contracts.harness import LiveIssuer  # only the test suite needs it

    password = secrets.token_urlsafe(24)
    state_dir = tmp_path / "localca-state"
    config = {
        "state_dir": str(state_dir),
        "key_password": password,
        "validity_days": HARNESS_VALIDITY.days,
    }
    issuer = await build_localca_issuer("localca-contract", config)
    built: list[IssuerPort] = [issuer]
    root = x509.load_pem_x509_certificate((state_dir / ROOT_FILES[0]).read_bytes())

    async def rebuild() -> IssuerPort:
        again = await build_localca_issuer("localca-rebuilt", config)
        built.append(again)
        return again

    def read_revocation(serial: int) -> RevocationReason | None:
        conn = sqlite3.connect(f"file:{state_dir / LEDGER_FILE}?mode=ro", uri=True)
        try:
            row = conn.execute(
                "SELECT revoked_at, reason FROM certificates WHERE serial = ?",
                (format_serial_hex(serial),),
            ).fetchone()
        finally:
            conn.close()
        if row is None or row[0] is None:
            return None
        return RevocationReason(row[1])

    async def is_revoked(serial: int) -> RevocationReason | None:
        return await asyncio.to_thread(read_revocation, serial)

    try:
        yield LiveIssuer(
            issuer,
            root=root,
            connector_type=CONNECTOR_TYPE,
            config=config,
            is_revoked=is_revoked,
            rebuild=rebuild,
            faults=_LocalCAFaults(state_dir),
            profile_ekus={
                name: frozenset(EXTENDED_KEY_USAGES[u] for u in profile.extended_key_usage)
                for name, profile in _BUILTIN_PROFILES.items()
            },
            secrets=(password,),
            default_validity=HARNESS_VALIDITY,
            lifetime_tolerance=BACKDATE + dt.timedelta(seconds=2),
        )
    finally:
        for each in built:
            await each.close()
