"""The PostgreSQL store: several server replicas on one database (ADR 0023).

Same semantics as :class:`~certctl_host.storage.SQLiteStore`: revisioned writes (a
conflict raises RevisionConflictError), secrets sealed with the server key (the same
envelope and associated data, :mod:`certctl_host.storage._sealing`), a row that does not
decode is that issuer's error only. On top of it:

* **Versioned migrations** run at open inside one transaction that holds a
  transaction-scoped advisory lock, so replicas starting at once migrate once and the
  others wait and find the schema current. A schema newer than this certctl is refused.
* **Change notification**: every config write bumps the store-wide revision (one counter
  row, locked by the write: revisions commit in order) and sends ``NOTIFY certctl_config``
  with the revision in the same transaction; a revocation sends ``certctl_ledger``.
  :meth:`PostgresStore.listener` gives a replica a dedicated LISTEN connection.
* **Replica reports**: each replica upserts what it serves (revision, generation, error per
  issuer) so every replica's API can show every replica's state.

Connections come from a psycopg pool in autocommit mode: a read or a ledger write is one
statement, one round trip. Reads and idempotent ledger writes are retried while the
database is unreachable, up to ``retry_seconds`` (a PostgreSQL restart); each attempt is
bounded by ``statement_seconds``: waiting for a pooled connection (``connect_timeout``)
and then running on it, each at most that long. A statement still running after it has
its socket shut down (a network cut that swallows packets is noticed by no server-side
timeout, and psycopg's own cancel-on-timeout waits 10 s more for an answer that cannot
come); the server also ends it (``statement_timeout``). The password in the URL never
appears in a log line, an error or a repr.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import attrs
import psycopg
from cryptography import x509
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from certctl_core.domain import CertificateStatus, RevocationReason, format_serial_hex
from certctl_core.errors import ConfigError, ConfigProblem
from certctl_host.storage._crypto import ServerKey
from certctl_host.storage._errors import (
    RevisionConflictError,
    StorageUnavailableError,
)
from certctl_host.storage._port import IssuerRecord, LedgerEntry, ProfileRecord
from certctl_host.storage._sealing import (
    check_schema_version,
    decode_record,
    key_check_value,
    seal_config,
    verify_key_check,
)

__all__ = ["CONFIG_CHANNEL", "LEDGER_CHANNEL", "Change", "PostgresStore", "redact_url"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
CONFIG_CHANNEL = "certctl_config"
LEDGER_CHANNEL = "certctl_ledger"
#: pg_advisory_xact_lock key of the migration step ("certctl" in ASCII).
_MIGRATION_LOCK = 0x6365727463746C
#: Seconds the migration step may wait for the lock (another replica migrating) and run.
MIGRATION_SECONDS = 60.0
#: libpq's words for a connection refused for good: not retried.
_PERMANENT = ("authentication failed", "does not exist", "no pg_hba.conf entry", "SSL")

#: Version -> statements bringing the schema from version-1 to version. Each runs in the
#: one transaction that holds the migration lock and records the new version.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE IF NOT EXISTS issuers (
            issuer_id TEXT PRIMARY KEY,
            type_name TEXT NOT NULL,
            config TEXT NOT NULL,
            ocsp_responder TEXT,
            revision BIGINT NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS profiles (
            name TEXT PRIMARY KEY,
            doc TEXT NOT NULL,
            revision BIGINT NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS certificates (
            issuer_id TEXT NOT NULL,
            serial TEXT NOT NULL,
            subject TEXT,
            not_after TIMESTAMPTZ,
            issued_at TIMESTAMPTZ,
            revoked_at TIMESTAMPTZ,
            reason SMALLINT,
            revocation_seq BIGINT,
            PRIMARY KEY (issuer_id, serial))""",
        """CREATE INDEX IF NOT EXISTS certificates_revoked
            ON certificates (issuer_id, revocation_seq) WHERE revoked_at IS NOT NULL""",
        "CREATE SEQUENCE IF NOT EXISTS revocation_seq",
        """CREATE TABLE IF NOT EXISTS replicas (
            replica_id TEXT PRIMARY KEY,
            seen_at TIMESTAMPTZ NOT NULL,
            served TEXT NOT NULL)""",
        "INSERT INTO meta VALUES ('config_revision', '0') ON CONFLICT DO NOTHING",
    ),
}

T = TypeVar("T")
_Conn = psycopg.AsyncConnection[TupleRow]


def redact_url(url: str) -> str:
    """The URL without its password (for logs and reprs); '<unparsable URL>' if it is not
    a connection string at all."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        return "<unparsable URL>"
    if "password" in params:
        params["password"] = "********"  # noqa: S105 - the mask, not a password
    params.pop("passfile", None)
    host = params.get("host", "localhost")
    port = params.get("port", 5432)
    user = params.get("user", "")
    dbname = params.get("dbname", "")
    shown = f"postgresql://{user}{':********' if 'password' in params else ''}@{host}:{port}"
    return f"{shown}/{dbname}"


@attrs.frozen
class Change:
    """A notification from the database: ``kind`` is ``config`` (an issuer or profile
    write; ``key`` is its id, ``revision`` the new store revision) or ``revocation``
    (``key`` is the issuer id). ``origin`` is the writing replica's id, if it gave one."""

    kind: str
    key: str
    revision: int | None = None
    origin: str | None = None


def _change(channel: str, payload: str) -> Change | None:
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    kind = "revocation" if channel == LEDGER_CHANNEL else "config"
    revision = data.get("revision")
    return Change(
        kind,
        str(data.get("id", "")),
        int(revision) if isinstance(revision, int) else None,
        data.get("origin") if isinstance(data.get("origin"), str) else None,
    )


class Listener:
    """A dedicated LISTEN connection (see :meth:`PostgresStore.listener`)."""

    def __init__(self, conn: _Conn, statement_seconds: float) -> None:
        self._conn = conn
        self._timeout = statement_seconds

    async def changes(self, wait: float) -> list[Change]:
        """The notifications that arrive within ``wait`` seconds (returns at the first
        batch). Raises StorageUnavailableError when the connection is lost."""
        found: list[Change] = []
        try:
            async for note in self._conn.notifies(timeout=wait, stop_after=1):
                change = _change(note.channel, note.payload)
                if change is not None:
                    found.append(change)
            # Take whatever else is queued already, without waiting.
            async for note in self._conn.notifies(timeout=0.001):
                change = _change(note.channel, note.payload)
                if change is not None:
                    found.append(change)
        except psycopg.Error as exc:
            raise _unavailable(exc) from None
        return found

    async def revision(self) -> int:
        """The store revision, read on this connection (which proves it alive)."""
        fired: list[bool] = []
        # Not asyncio.timeout: psycopg's cancel-on-timeout would wait 10 s more on a cut.
        handle = asyncio.get_running_loop().call_later(self._timeout, _cut, self._conn, fired)
        try:
            cursor = await self._conn.execute(
                "SELECT value FROM meta WHERE name = 'config_revision'"
            )
            row = await cursor.fetchone()
        except psycopg.Error as exc:
            if fired:
                raise StorageUnavailableError(
                    "the database did not answer in time", retry_after=1.0
                ) from None
            raise _unavailable(exc) from None
        finally:
            handle.cancel()
        return 0 if row is None else int(row[0])


def _unavailable(exc: BaseException, shown: str = "") -> StorageUnavailableError:
    # libpq's messages name host and port, never the password; ``shown`` is the URL
    # without its password.
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    where = f" {shown}" if shown else ""
    refused = any(word in text for word in _PERMANENT)
    return StorageUnavailableError(
        f"the database{where} could not be used: {text}",
        retry_after=1.0,
        hint="check the user, password (PGPASSWORD, ~/.pgpass or the URL) and database "
        "name of database_url"
        if refused
        else "check that PostgreSQL is running and reachable from this replica",
    )


def _is_connection_error(exc: BaseException) -> bool:
    if any(word in str(exc) for word in _PERMANENT):
        return False  # a wrong password does not get right by retrying
    return isinstance(exc, psycopg.OperationalError | PoolTimeout | TimeoutError)


def _cut(conn: _Conn, fired: list[bool]) -> None:
    """Shut the connection's socket down: the call waiting on it fails at once and the
    pool discards the connection."""
    fired.append(True)
    with (
        contextlib.suppress(OSError, psycopg.Error, ValueError),
        socket.socket(fileno=os.dup(conn.pgconn.socket)) as sock,
    ):
        sock.shutdown(socket.SHUT_RDWR)


class PostgresStore:
    """The PostgreSQL :class:`~certctl_host.storage.Store`. Open it with :meth:`open`."""

    def __init__(
        self,
        url: str,
        key: ServerKey,
        *,
        pool_size: int = 8,
        statement_seconds: float = 5.0,
        retry_seconds: float = 5.0,
    ) -> None:
        self._url = url
        self._shown = redact_url(url)
        self._key = key
        self._statement_seconds = statement_seconds
        self._retry_seconds = retry_seconds
        self._pool: AsyncConnectionPool[_Conn] = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True},
            open=False,
            timeout=statement_seconds,
            reconnect_timeout=3600,
            name="certctl",
        )
        self._closed = False
        #: round trips sent (statements; BEGIN and COMMIT count), for the benchmark
        self.round_trips = 0

    def __repr__(self) -> str:
        return f"PostgresStore(url={self._shown!r})"

    @property
    def shown_url(self) -> str:
        return self._shown

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        key: ServerKey,
        pool_size: int = 8,
        statement_seconds: float = 5.0,
        retry_seconds: float = 5.0,
    ) -> PostgresStore:
        """Connect, migrate the schema (once, under an advisory lock) and check the key.

        Raises ConfigError for a URL that is not a PostgreSQL connection string,
        StorageUnavailableError when the database cannot be reached, ServerKeyError for a
        wrong server key or a newer schema."""
        try:
            conninfo_to_dict(url)
        except psycopg.Error:
            raise ConfigError(
                [
                    ConfigProblem(
                        "database_url",
                        "is not a PostgreSQL connection URL",
                        "use postgresql://user:password@host:port/database",
                    )
                ]
            ) from None
        # Bounds unless the URL sets them: TCP keepalives and tcp_user_timeout (a dead
        # peer is noticed by the kernel too), connect_timeout, and server-side timeouts.
        millis = int(statement_seconds * 1000)
        url = make_conninfo(
            url,
            **{
                k: v
                for k, v in {
                    "connect_timeout": str(max(1, round(statement_seconds))),
                    "keepalives": "1",
                    "keepalives_idle": "5",
                    "keepalives_interval": "2",
                    "keepalives_count": "3",
                    "tcp_user_timeout": str(2 * millis),
                    "options": f"-c statement_timeout={millis} "
                    f"-c idle_in_transaction_session_timeout={2 * millis}",
                    "application_name": "certctl",
                }.items()
                if k not in conninfo_to_dict(url)
            },
        )
        store = cls(
            url,
            key,
            pool_size=pool_size,
            statement_seconds=statement_seconds,
            retry_seconds=retry_seconds,
        )
        try:
            # One direct connection first: its error (libpq's first line) is the one
            # reported, and migrations get their own deadline (they may wait for another
            # replica's); the pool opens once the database has answered.
            await store._migrate()
            await store._pool.open(wait=False)
        except BaseException:
            await store.aclose()
            raise
        return store

    async def _migrate(self) -> None:
        deadline = time.monotonic() + self._retry_seconds
        pause = 0.05
        while True:
            try:
                async with asyncio.timeout(self._statement_seconds + 1):
                    conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
            except (psycopg.Error, TimeoutError) as exc:
                if _is_connection_error(exc) and time.monotonic() + pause < deadline:
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 0.5)
                    continue
                if isinstance(exc, TimeoutError):
                    raise self._late() from None
                raise _unavailable(exc, self._shown) from None
            break
        async with conn:
            await self._bounded(conn, self._init, MIGRATION_SECONDS)

    # -- plumbing ----------------------------------------------------------------------

    async def _retrying(self, fn: Callable[[_Conn], Awaitable[T]], *, retry: bool = True) -> T:
        """Run ``fn`` on a pooled connection, each attempt bounded by statement_seconds;
        connection failures are retried up to retry_seconds when ``retry``."""
        if self._closed:
            raise StorageUnavailableError("the store is closed", hint="open it again")
        deadline = time.monotonic() + self._retry_seconds
        pause = 0.05
        while True:
            sent = False
            try:
                async with self._pool.connection(timeout=self._statement_seconds) as conn:
                    sent = True
                    return await self._bounded(conn, fn, self._statement_seconds)
            except (psycopg.Error, PoolTimeout, TimeoutError) as exc:
                if retry and _is_connection_error(exc) and time.monotonic() + pause < deadline:
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 0.5)
                    continue
                if not retry and sent and _is_connection_error(exc):
                    # The write went out and its answer did not come back: COMMIT may
                    # have happened.
                    raise StorageUnavailableError(
                        f"the database {self._shown} did not confirm the write; the outcome "
                        "is unknown (it may have been saved)",
                        retry_after=1.0,
                        hint="GET it to see whether its revision moved before writing again",
                    ) from None
                if isinstance(exc, TimeoutError | PoolTimeout):
                    raise self._late() from None
                log.warning("store %s: %s", self._shown, type(exc).__name__)
                raise _unavailable(exc, self._shown) from None

    def _late(self) -> StorageUnavailableError:
        return StorageUnavailableError(
            f"the database {self._shown} did not answer within {self._statement_seconds:g} s",
            retry_after=1.0,
            hint="check that PostgreSQL is running and reachable from this replica",
        )

    async def _bounded(self, conn: _Conn, fn: Callable[[_Conn], Awaitable[T]], seconds: float) -> T:
        """``fn(conn)``; the connection is cut if it still runs after ``seconds`` (raised
        as TimeoutError)."""
        fired: list[bool] = []
        handle = asyncio.get_running_loop().call_later(seconds, _cut, conn, fired)
        try:
            return await fn(conn)
        except psycopg.Error:
            if fired:
                raise TimeoutError from None
            raise
        finally:
            handle.cancel()

    async def _exec(
        self, conn: _Conn, query: str, params: Sequence[Any] = ()
    ) -> psycopg.AsyncCursor[TupleRow]:
        self.round_trips += 1
        return await conn.execute(query, params)

    @contextlib.asynccontextmanager
    async def _transaction(self, conn: _Conn) -> AsyncIterator[None]:
        self.round_trips += 2  # BEGIN and COMMIT (or ROLLBACK)
        async with conn.transaction():
            yield

    async def _init(self, conn: _Conn) -> None:
        async with self._transaction(conn):
            await self._exec(conn, f"SET LOCAL statement_timeout = {int(MIGRATION_SECONDS * 1000)}")
            await self._exec(conn, "SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            exists = await (
                await self._exec(conn, "SELECT to_regclass('meta') IS NOT NULL")
            ).fetchone()
            rows: dict[str, str] = {}
            if exists is not None and exists[0]:
                cursor = await self._exec(conn, "SELECT name, value FROM meta")
                rows = {name: value for name, value in await cursor.fetchall()}
            version = int(rows.get("schema_version", 0))
            check_schema_version(version, SCHEMA_VERSION, "database_url", "the database ")
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[step]:
                    await self._exec(conn, statement)
                log.info("store schema migrated to version %d", step)
            if version < SCHEMA_VERSION:
                await self._exec(
                    conn,
                    "INSERT INTO meta VALUES ('schema_version', %s) "
                    "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    (str(SCHEMA_VERSION),),
                )
            check = rows.get("key_check")
            if check is None:
                sealed = key_check_value(self._key)
                await self._exec(conn, "INSERT INTO meta VALUES ('key_check', %s)", (sealed,))
            else:
                verify_key_check(self._key, check)

    # -- issuers -----------------------------------------------------------------------

    _SELECT = (
        "SELECT issuer_id, type_name, config, ocsp_responder, revision, updated_at FROM issuers"
    )

    async def list_issuers(self) -> list[IssuerRecord]:
        async def run(conn: _Conn) -> list[IssuerRecord]:
            rows = await (await self._exec(conn, f"{self._SELECT} ORDER BY issuer_id")).fetchall()
            return [decode_record(self._key, *row) for row in rows]

        return await self._retrying(run)

    async def get_issuer(self, issuer_id: str) -> IssuerRecord | None:
        async def run(conn: _Conn) -> IssuerRecord | None:
            cursor = await self._exec(conn, f"{self._SELECT} WHERE issuer_id = %s", (issuer_id,))
            row = await cursor.fetchone()
            return None if row is None else decode_record(self._key, *row)

        return await self._retrying(run)

    async def _bump(self, conn: _Conn, kind: str, key: str) -> int:
        """The next store revision (the counter row stays locked until COMMIT: revisions
        become visible in order), announced at COMMIT."""
        cursor = await self._exec(
            conn,
            "UPDATE meta SET value = (value::bigint + 1)::text "
            "WHERE name = 'config_revision' RETURNING value::bigint",
        )
        row = await cursor.fetchone()
        assert row is not None
        revision = int(row[0])
        payload = json.dumps({"revision": revision, "kind": kind, "id": key})
        await self._exec(conn, "SELECT pg_notify(%s, %s)", (CONFIG_CHANNEL, payload))
        return revision

    async def put_issuer(
        self,
        record: IssuerRecord,
        *,
        secret_fields: frozenset[str] = frozenset(),
        expected_revision: int | None = None,
    ) -> IssuerRecord:
        config = seal_config(self._key, record.issuer_id, "config", record.config, secret_fields)
        responder = (
            None
            if record.ocsp_responder is None
            else seal_config(
                self._key, record.issuer_id, "ocsp_responder", record.ocsp_responder, secret_fields
            )
        )
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)

        async def run(conn: _Conn) -> int:
            async with self._transaction(conn):
                # The counter row first: it serialises every config write, so the read
                # below sees the last committed one, also of an issuer that has no row
                # yet (FOR UPDATE on a missing row would lock nothing).
                revision = await self._bump(conn, "issuer", record.issuer_id)
                cursor = await self._exec(
                    conn, "SELECT revision FROM issuers WHERE issuer_id = %s", (record.issuer_id,)
                )
                row = await cursor.fetchone()
                current = 0 if row is None else int(row[0])
                if expected_revision is not None and expected_revision != current:
                    raise RevisionConflictError(record.issuer_id, expected_revision, current)
                await self._exec(
                    conn,
                    "INSERT INTO issuers VALUES (%s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (issuer_id) DO UPDATE SET type_name = excluded.type_name, "
                    "config = excluded.config, ocsp_responder = excluded.ocsp_responder, "
                    "revision = excluded.revision, updated_at = excluded.updated_at",
                    (record.issuer_id, record.type_name, config, responder, revision, now),
                )
                return revision

        # Not retried: a COMMIT whose answer was lost may have written the row.
        revision = await self._retrying(run, retry=False)
        return IssuerRecord(
            record.issuer_id,
            record.type_name,
            dict(record.config),
            None if record.ocsp_responder is None else dict(record.ocsp_responder),
            revision,
            now,
        )

    async def delete_issuer(self, issuer_id: str) -> bool:
        async def run(conn: _Conn) -> bool:
            async with self._transaction(conn):
                cursor = await self._exec(
                    conn, "DELETE FROM issuers WHERE issuer_id = %s", (issuer_id,)
                )
                if cursor.rowcount:
                    await self._bump(conn, "issuer", issuer_id)
                return cursor.rowcount > 0

        return await self._retrying(run, retry=False)

    async def config_revision(self) -> int:
        async def run(conn: _Conn) -> int:
            cursor = await self._exec(conn, "SELECT value FROM meta WHERE name = 'config_revision'")
            row = await cursor.fetchone()
            return 0 if row is None else int(row[0])

        return await self._retrying(run)

    # -- profiles ----------------------------------------------------------------------

    _PROFILE = "SELECT name, doc, revision, updated_at FROM profiles"

    @staticmethod
    def _profile_record(row: tuple[Any, ...]) -> ProfileRecord:
        name, doc, revision, updated_at = row
        return ProfileRecord(name, json.loads(doc), int(revision), updated_at)

    async def profiles(self) -> list[ProfileRecord]:
        async def run(conn: _Conn) -> list[ProfileRecord]:
            rows = await (await self._exec(conn, f"{self._PROFILE} ORDER BY name")).fetchall()
            return [self._profile_record(row) for row in rows]

        return await self._retrying(run)

    async def profile(self, name: str) -> ProfileRecord | None:
        async def run(conn: _Conn) -> ProfileRecord | None:
            cursor = await self._exec(conn, f"{self._PROFILE} WHERE name = %s", (name,))
            row = await cursor.fetchone()
            return None if row is None else self._profile_record(row)

        return await self._retrying(run)

    async def put_profile(
        self, name: str, doc: Mapping[str, Any], expected_revision: int | None = None
    ) -> ProfileRecord:
        text = json.dumps(dict(doc), sort_keys=True)
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)

        async def run(conn: _Conn) -> int:
            async with self._transaction(conn):
                # The counter row first (see put_issuer).
                revision = await self._bump(conn, "profile", name)
                cursor = await self._exec(
                    conn, "SELECT revision FROM profiles WHERE name = %s", (name,)
                )
                row = await cursor.fetchone()
                current = 0 if row is None else int(row[0])
                if expected_revision is not None and expected_revision != current:
                    raise RevisionConflictError(name, expected_revision, current, kind="profile")
                await self._exec(
                    conn,
                    "INSERT INTO profiles VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO UPDATE "
                    "SET doc = excluded.doc, revision = excluded.revision, "
                    "updated_at = excluded.updated_at",
                    (name, text, revision, now),
                )
                return revision

        revision = await self._retrying(run, retry=False)
        return ProfileRecord(name, json.loads(text), revision, now)

    async def delete_profile(self, name: str) -> bool:
        async def run(conn: _Conn) -> bool:
            async with self._transaction(conn):
                cursor = await self._exec(conn, "DELETE FROM profiles WHERE name = %s", (name,))
                if cursor.rowcount:
                    await self._bump(conn, "profile", name)
                return cursor.rowcount > 0

        return await self._retrying(run, retry=False)

    # -- ledger ------------------------------------------------------------------------

    _ENTRY = "SELECT serial, subject, not_after, revoked_at, reason FROM certificates"

    @staticmethod
    def _entry(issuer_id: str, row: Sequence[Any]) -> LedgerEntry:
        serial, subject, not_after, revoked_at, reason = row[:5]
        return LedgerEntry(
            issuer_id=issuer_id,
            serial=int(serial, 16),
            not_after=not_after,
            revoked_at=revoked_at,
            reason=None if reason is None else RevocationReason(reason),
            subject=subject,
        )

    async def record_issued(self, issuer_id: str, certificate: x509.Certificate) -> None:
        params = (
            issuer_id,
            format_serial_hex(certificate.serial_number),
            certificate.subject.rfc4514_string(),
            certificate.not_valid_after_utc,
        )

        async def run(conn: _Conn) -> None:
            await self._exec(
                conn,
                "INSERT INTO certificates (issuer_id, serial, subject, not_after, issued_at) "
                "VALUES (%s, %s, %s, %s, now()) ON CONFLICT (issuer_id, serial) DO UPDATE SET "
                "subject = excluded.subject, not_after = excluded.not_after, "
                "issued_at = COALESCE(certificates.issued_at, excluded.issued_at)",
                params,
            )

        await self._retrying(run)  # idempotent per serial: safe to send again

    async def record_revocation(
        self,
        issuer_id: str,
        serial: int,
        reason: RevocationReason,
        revoked_at: dt.datetime,
    ) -> tuple[LedgerEntry, bool]:
        hex_serial = format_serial_hex(serial)
        when = revoked_at.replace(microsecond=0)
        payload = json.dumps({"id": issuer_id, "serial": hex_serial})

        async def run(conn: _Conn) -> tuple[LedgerEntry, bool]:
            # One statement: revoke unless already revoked, and announce it.
            cursor = await self._exec(
                conn,
                "WITH changed AS ("
                " INSERT INTO certificates (issuer_id, serial, revoked_at, reason, revocation_seq)"
                " VALUES (%s, %s, %s, %s, nextval('revocation_seq'))"
                " ON CONFLICT (issuer_id, serial) DO UPDATE SET revoked_at = excluded.revoked_at,"
                " reason = excluded.reason, revocation_seq = excluded.revocation_seq"
                " WHERE certificates.revoked_at IS NULL"
                " RETURNING serial, subject, not_after, revoked_at, reason)"
                " SELECT changed.*, pg_notify(%s, %s) FROM changed",
                (issuer_id, hex_serial, when, int(reason), LEDGER_CHANNEL, payload),
            )
            row = await cursor.fetchone()
            if row is not None:
                return self._entry(issuer_id, row), True
            cursor = await self._exec(
                conn,
                f"{self._ENTRY} WHERE issuer_id = %s AND serial = %s",
                (issuer_id, hex_serial),
            )
            row = await cursor.fetchone()
            assert row is not None
            return self._entry(issuer_id, row), False

        # Retried: a second attempt after a lost answer finds it revoked with the same
        # time and reason (reported as not new, which the service answers alike).
        return await self._retrying(run)

    async def status(self, issuer_id: str, serial: int) -> CertificateStatus:
        async def run(conn: _Conn) -> CertificateStatus:
            cursor = await self._exec(
                conn,
                f"{self._ENTRY} WHERE issuer_id = %s AND serial = %s",
                (issuer_id, format_serial_hex(serial)),
            )
            row = await cursor.fetchone()
            if row is None:
                return CertificateStatus(serial, "unknown")
            return self._entry(issuer_id, row).status()

        return await self._retrying(run)

    async def revocations(self, issuer_id: str) -> Sequence[LedgerEntry]:
        async def run(conn: _Conn) -> list[LedgerEntry]:
            cursor = await self._exec(
                conn,
                f"{self._ENTRY} WHERE issuer_id = %s "
                "AND revoked_at IS NOT NULL ORDER BY revocation_seq",
                (issuer_id,),
            )
            return [self._entry(issuer_id, row) for row in await cursor.fetchall()]

        return await self._retrying(run)

    # -- replicas ----------------------------------------------------------------------

    async def report_replica(self, replica_id: str, served: Mapping[str, Any]) -> None:
        """Record what this replica serves now (and that it is alive)."""
        text = json.dumps(served, sort_keys=True)

        async def run(conn: _Conn) -> None:
            await self._exec(
                conn,
                "INSERT INTO replicas VALUES (%s, now(), %s) ON CONFLICT (replica_id) "
                "DO UPDATE SET seen_at = excluded.seen_at, served = excluded.served",
                (replica_id, text),
            )

        await self._retrying(run, retry=False)

    async def replicas(self) -> list[tuple[str, dt.datetime, float, dict[str, Any]]]:
        """Every replica's last report: (id, when, seconds ago by the database's clock,
        what it serves by issuer id)."""

        async def run(conn: _Conn) -> list[tuple[str, dt.datetime, float, dict[str, Any]]]:
            cursor = await self._exec(
                conn,
                "SELECT replica_id, seen_at, EXTRACT(EPOCH FROM now() - seen_at)::float8, "
                "served FROM replicas ORDER BY replica_id",
            )
            return [
                (r, seen, float(age), json.loads(served))
                for r, seen, age, served in await cursor.fetchall()
            ]

        return await self._retrying(run)

    async def forget_replicas(self, older_than: float) -> int:
        """Remove the reports of replicas not seen for ``older_than`` seconds (gone for
        good: replaced, scaled down, or restarted under another id); returns how many."""

        async def run(conn: _Conn) -> int:
            cursor = await self._exec(
                conn,
                "DELETE FROM replicas WHERE seen_at < now() - make_interval(secs => %s)",
                (older_than,),
            )
            return cursor.rowcount

        return await self._retrying(run)

    async def forget_replica(self, replica_id: str) -> None:
        async def run(conn: _Conn) -> None:
            await self._exec(conn, "DELETE FROM replicas WHERE replica_id = %s", (replica_id,))

        await self._retrying(run, retry=False)

    @contextlib.asynccontextmanager
    async def listener(self) -> AsyncIterator[Listener]:
        """A dedicated connection listening on the config and ledger channels.

        Raises StorageUnavailableError when it cannot connect."""
        try:
            async with asyncio.timeout(self._statement_seconds):
                conn = await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, application_name="certctl-listen"
                )
        except TimeoutError:
            raise StorageUnavailableError(
                "the database did not answer in time", retry_after=1.0
            ) from None
        except psycopg.Error as exc:
            raise _unavailable(exc) from None
        try:
            try:
                for channel in (CONFIG_CHANNEL, LEDGER_CHANNEL):
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            except psycopg.Error as exc:
                raise _unavailable(exc) from None
            yield Listener(conn, self._statement_seconds)
        finally:
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()

    # -- lifecycle ---------------------------------------------------------------------

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._pool.close(timeout=2.0)

    async def __aenter__(self) -> PostgresStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
