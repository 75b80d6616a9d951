"""The embedded store: one SQLite database in the data directory.

``<data_dir>/certctl.sqlite3`` (mode 0600) in WAL mode with ``synchronous=FULL``: a config
write or a revocation acknowledged survives a crash. Several processes may open the same
data directory (the server and ``certctl issue/revoke``): SQLite's file locks serialise
writers, readers never wait in WAL mode, and a writer waits up to ``busy_timeout`` for
another one before :class:`StorageUnavailableError` (transient) is raised.

The event loop never touches the disk: every operation runs in a small thread pool, each
thread with its own connection. Reads and writes have separate pools (and connections;
the readers' are ``query_only``): writes queued behind another process's write lock,
each waiting up to ``busy_timeout``, never hold up a read such as an OCSP status lookup.
Serials are stored as lower-case hex text (they exceed SQLite's 64-bit integers); times
as POSIX seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509

from certctl_core.domain import CertificateStatus, RevocationReason, format_serial_hex
from certctl_core.errors import ConfigProblem
from certctl_host.storage._crypto import ServerKey
from certctl_host.storage._errors import (
    RevisionConflictError,
    ServerKeyError,
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

__all__ = ["DB_FILE", "SQLiteStore"]

#: How long a write waits for the database's write lock (SQLite's busy_timeout).
_BUSY_SECONDS = 10.0

log = logging.getLogger(__name__)

DB_FILE = "certctl.sqlite3"
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS issuers (
    issuer_id TEXT PRIMARY KEY,
    type_name TEXT NOT NULL,
    config TEXT NOT NULL,             -- JSON; secret fields sealed
    ocsp_responder TEXT,              -- JSON partial config or NULL; secret fields sealed
    revision INTEGER NOT NULL,        -- store-wide, grows with every write
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS certificates (
    issuer_id TEXT NOT NULL,
    serial TEXT NOT NULL,             -- lower-case hex, even number of digits
    subject TEXT,
    not_after INTEGER,                -- NULL: revoked without being seen issued
    issued_at INTEGER,
    revoked_at INTEGER,
    reason INTEGER,
    revocation_seq INTEGER,
    PRIMARY KEY (issuer_id, serial)
);
CREATE INDEX IF NOT EXISTS certificates_revoked
    ON certificates (issuer_id, revocation_seq) WHERE revoked_at IS NOT NULL;
"""

#: Schema version -> the statements that bring a version-1 database (``_SCHEMA``) one
#: step further. Run in order, each inside the write transaction that also records the
#: new ``schema_version``: a new database and one written by an older certctl take the
#: same path, and a crash mid-migration leaves the old version intact.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: (
        """CREATE TABLE IF NOT EXISTS profiles (
            name TEXT PRIMARY KEY,
            doc TEXT NOT NULL,               -- JSON object, validated by the server
            revision INTEGER NOT NULL,       -- store-wide, shared with issuers
            updated_at INTEGER NOT NULL
        )""",
    ),
}

T = TypeVar("T")


def _ts(value: dt.datetime) -> int:
    return int(value.timestamp())


def _dt(value: int | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromtimestamp(value, dt.UTC)


def _prepare_dir(data_dir: Path | str) -> Path:
    directory = Path(data_dir).expanduser()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    return directory


class SQLiteStore:
    """The SQLite :class:`~certctl_host.storage.Store`. Open it with :meth:`open`."""

    def __init__(self, path: Path, key: ServerKey, *, workers: int = 4) -> None:
        self.path = path
        self._key = key
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._conn_lock = threading.Lock()
        # This process's writers take turns here: SQLite's busy handler would make a
        # writer that finds the lock taken sleep 1, 2, 5, 10... ms (issue 18: 8 concurrent
        # API issuances ran at a third of the connector's rate). Other processes still
        # wait through busy_timeout.
        self._write_turn = threading.Lock()
        # Separate pools: a read never queues behind writes waiting for the write lock.
        self._writer = ThreadPoolExecutor(
            max_workers=workers,
            thread_name_prefix="certctl-db-write",
            initializer=self._mark_thread,
            initargs=(False,),
        )
        self._reader = ThreadPoolExecutor(
            max_workers=workers,
            thread_name_prefix="certctl-db-read",
            initializer=self._mark_thread,
            initargs=(True,),
        )
        self._closed = False

    def __repr__(self) -> str:
        return f"SQLiteStore(path={str(self.path)!r})"

    @classmethod
    async def open(
        cls,
        data_dir: Path | str,
        *,
        env: Mapping[str, str] | None = None,
        key: ServerKey | None = None,
        workers: int = 4,
    ) -> SQLiteStore:
        """Open (creating if needed) the store of ``data_dir``.

        The server key comes from ``key``, else ``CERTCTL_SERVER_KEY`` in ``env``
        (default ``os.environ``), else ``data_dir/server.key`` (created on first use).
        Raises ServerKeyError for a missing, malformed or wrong key, ConfigError for an
        unusable directory.
        """
        environ = os.environ if env is None else env
        try:
            directory = await asyncio.to_thread(_prepare_dir, data_dir)
        except OSError as exc:
            raise ServerKeyError(
                [ConfigProblem("data_dir", f"cannot be created: {exc.strerror}")]
            ) from None
        if key is None:
            key = await asyncio.to_thread(ServerKey.load_or_create, directory, environ)
        store = cls(directory / DB_FILE, key, workers=workers)
        try:
            await store._run(store._init_sync)
        except BaseException:
            await store.aclose()
            raise
        return store

    # -- plumbing ----------------------------------------------------------------------

    def _mark_thread(self, readonly: bool) -> None:
        self._local.readonly = readonly

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=10
            )
            if getattr(self._local, "readonly", False):
                # WAL readers never wait for a writer; this connection cannot write.
                conn.execute("PRAGMA query_only=ON")
            else:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
            conn.execute(f"PRAGMA busy_timeout={int(_BUSY_SECONDS * 1000)}")
            self._local.conn = conn
            with self._conn_lock:
                self._connections.append(conn)
        return conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: committed on success, rolled back on any error."""
        conn = self._conn()
        # Bounded like SQLite's own wait: a writer stuck behind another process must not
        # hold the other writer threads longer than busy_timeout (then "database is
        # locked", reported as the store being unavailable).
        if not self._write_turn.acquire(timeout=_BUSY_SECONDS):
            raise sqlite3.OperationalError("database is locked")
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                # Also when COMMIT itself failed (a deferred constraint, I/O error): the
                # connection must not stay inside the transaction. A failing ROLLBACK must
                # not hide the error that caused it.
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
        finally:
            self._write_turn.release()

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` (no writes) on a reader thread."""
        return await self._run(fn, *args, executor=self._reader)

    async def _run(
        self, fn: Callable[..., T], *args: Any, executor: ThreadPoolExecutor | None = None
    ) -> T:
        """Run ``fn`` on a writer thread (or on ``executor``)."""
        if self._closed:
            raise StorageUnavailableError("the store is closed", hint="open it again")
        loop = asyncio.get_running_loop()
        pool = self._writer if executor is None else executor
        try:
            return await loop.run_in_executor(pool, functools.partial(fn, *args))
        except sqlite3.Error as exc:
            # Busy beyond the timeout, disk full, I/O error: retry later. The message names
            # the database, never a config value.
            log.warning("store %s: %s: %s", self.path, type(exc).__name__, exc)
            raise StorageUnavailableError(
                f"the store could not be used: {exc}", retry_after=1.0
            ) from exc
        except OSError as exc:
            raise StorageUnavailableError(
                f"the store could not be used: {exc.strerror}", retry_after=1.0
            ) from exc

    def _init_sync(self) -> None:
        if not self.path.exists():
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        self._conn().executescript(_SCHEMA)
        with self._write() as conn:
            rows = dict(conn.execute("SELECT name, value FROM meta").fetchall())
            # No row yet: a new database, which _SCHEMA made version 1.
            version = int(rows.get("schema_version", 1))
            check_schema_version(version, SCHEMA_VERSION, "data_dir")
            check = rows.get("key_check")
            if check is None:
                sealed = key_check_value(self._key)
                conn.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('key_check', ?), ('schema_version', ?)",
                    (sealed, str(SCHEMA_VERSION)),
                )
            else:
                verify_key_check(self._key, check)
            self._migrate(conn, version)

    @staticmethod
    def _migrate(conn: sqlite3.Connection, version: int) -> None:
        """Bring the schema from ``version`` to SCHEMA_VERSION (inside the caller's
        write transaction)."""
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[step]:
                conn.execute(statement)
            log.info("store schema migrated to version %d", step)
        if version < SCHEMA_VERSION:
            conn.execute(
                "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )

    # -- issuers -----------------------------------------------------------------------

    def _seal(
        self, issuer_id: str, part: str, config: Mapping[str, Any], secret: frozenset[str]
    ) -> str:
        return seal_config(self._key, issuer_id, part, config, secret)

    def _record(self, row: tuple[Any, ...]) -> IssuerRecord:
        issuer_id, type_name, config, responder, revision, updated_at = row
        return decode_record(
            self._key, issuer_id, type_name, config, responder, revision, _dt(updated_at)
        )

    _SELECT = (
        "SELECT issuer_id, type_name, config, ocsp_responder, revision, updated_at FROM issuers"
    )

    def _list_sync(self) -> list[IssuerRecord]:
        rows = self._conn().execute(f"{self._SELECT} ORDER BY issuer_id").fetchall()
        return [self._record(row) for row in rows]

    def _get_sync(self, issuer_id: str) -> IssuerRecord | None:
        row = self._conn().execute(f"{self._SELECT} WHERE issuer_id = ?", (issuer_id,)).fetchone()
        return None if row is None else self._record(row)

    def _put_sync(
        self, record: IssuerRecord, secret: frozenset[str], expected: int | None
    ) -> IssuerRecord:
        config = self._seal(record.issuer_id, "config", record.config, secret)
        responder = (
            None
            if record.ocsp_responder is None
            else self._seal(record.issuer_id, "ocsp_responder", record.ocsp_responder, secret)
        )
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        with self._write() as conn:
            row = conn.execute(
                "SELECT revision FROM issuers WHERE issuer_id = ?", (record.issuer_id,)
            ).fetchone()
            current = 0 if row is None else int(row[0])
            if expected is not None and expected != current:
                raise RevisionConflictError(record.issuer_id, expected, current)
            revision = self._next_revision(conn)
            conn.execute(
                "INSERT OR REPLACE INTO issuers VALUES (?, ?, ?, ?, ?, ?)",
                (record.issuer_id, record.type_name, config, responder, revision, _ts(now)),
            )
        return IssuerRecord(
            record.issuer_id,
            record.type_name,
            dict(record.config),
            None if record.ocsp_responder is None else dict(record.ocsp_responder),
            revision,
            now,
        )

    @staticmethod
    def _next_revision(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT value FROM meta WHERE name = 'config_revision'").fetchone()
        revision = (0 if row is None else int(row[0])) + 1
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('config_revision', ?)", (str(revision),))
        return revision

    def _delete_sync(self, issuer_id: str) -> bool:
        with self._write() as conn:
            deleted = conn.execute("DELETE FROM issuers WHERE issuer_id = ?", (issuer_id,))
            if deleted.rowcount:
                self._next_revision(conn)
            return deleted.rowcount > 0

    def _revision_sync(self) -> int:
        row = (
            self._conn().execute("SELECT value FROM meta WHERE name = 'config_revision'").fetchone()
        )
        return 0 if row is None else int(row[0])

    async def list_issuers(self) -> list[IssuerRecord]:
        return await self._read(self._list_sync)

    async def get_issuer(self, issuer_id: str) -> IssuerRecord | None:
        return await self._read(self._get_sync, issuer_id)

    async def put_issuer(
        self,
        record: IssuerRecord,
        *,
        secret_fields: frozenset[str] = frozenset(),
        expected_revision: int | None = None,
    ) -> IssuerRecord:
        return await self._run(self._put_sync, record, secret_fields, expected_revision)

    async def delete_issuer(self, issuer_id: str) -> bool:
        return await self._run(self._delete_sync, issuer_id)

    async def config_revision(self) -> int:
        return await self._read(self._revision_sync)

    # -- profiles ----------------------------------------------------------------------

    _PROFILE = "SELECT name, doc, revision, updated_at FROM profiles"

    @staticmethod
    def _profile_record(row: tuple[Any, ...]) -> ProfileRecord:
        name, doc, revision, updated_at = row
        return ProfileRecord(name, json.loads(doc), revision, _dt(updated_at))

    def _profiles_sync(self) -> list[ProfileRecord]:
        rows = self._conn().execute(f"{self._PROFILE} ORDER BY name").fetchall()
        return [self._profile_record(row) for row in rows]

    def _profile_sync(self, name: str) -> ProfileRecord | None:
        row = self._conn().execute(f"{self._PROFILE} WHERE name = ?", (name,)).fetchone()
        return None if row is None else self._profile_record(row)

    def _put_profile_sync(
        self, name: str, doc: Mapping[str, Any], expected: int | None
    ) -> ProfileRecord:
        text = json.dumps(dict(doc), sort_keys=True)
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        with self._write() as conn:
            row = conn.execute("SELECT revision FROM profiles WHERE name = ?", (name,)).fetchone()
            current = 0 if row is None else int(row[0])
            if expected is not None and expected != current:
                raise RevisionConflictError(name, expected, current, kind="profile")
            revision = self._next_revision(conn)
            conn.execute(
                "INSERT OR REPLACE INTO profiles VALUES (?, ?, ?, ?)",
                (name, text, revision, _ts(now)),
            )
        return ProfileRecord(name, json.loads(text), revision, now)

    def _delete_profile_sync(self, name: str) -> bool:
        with self._write() as conn:
            deleted = conn.execute("DELETE FROM profiles WHERE name = ?", (name,))
            if deleted.rowcount:
                self._next_revision(conn)
            return deleted.rowcount > 0

    async def profiles(self) -> list[ProfileRecord]:
        return await self._run(self._profiles_sync)

    async def profile(self, name: str) -> ProfileRecord | None:
        return await self._run(self._profile_sync, name)

    async def put_profile(
        self, name: str, doc: Mapping[str, Any], expected_revision: int | None = None
    ) -> ProfileRecord:
        return await self._run(self._put_profile_sync, name, doc, expected_revision)

    async def delete_profile(self, name: str) -> bool:
        return await self._run(self._delete_profile_sync, name)

    # -- ledger ------------------------------------------------------------------------

    def _issued_sync(self, issuer_id: str, serial: str, subject: str, not_after: int) -> None:
        now = _ts(dt.datetime.now(dt.UTC))
        with self._write() as conn:
            conn.execute(
                "INSERT INTO certificates (issuer_id, serial, subject, not_after, issued_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (issuer_id, serial) DO UPDATE SET "
                "subject = excluded.subject, not_after = excluded.not_after, "
                "issued_at = COALESCE(certificates.issued_at, excluded.issued_at)",
                (issuer_id, serial, subject, not_after, now),
            )

    def _entry(self, issuer_id: str, row: tuple[Any, ...]) -> LedgerEntry:
        serial, subject, not_after, revoked_at, reason = row
        return LedgerEntry(
            issuer_id=issuer_id,
            serial=int(serial, 16),
            not_after=_dt(not_after),
            revoked_at=_dt(revoked_at),
            reason=None if reason is None else RevocationReason(reason),
            subject=subject,
        )

    _ENTRY = "SELECT serial, subject, not_after, revoked_at, reason FROM certificates"

    def _revoke_sync(
        self, issuer_id: str, serial: str, reason: int, revoked_at: int
    ) -> tuple[LedgerEntry, bool]:
        with self._write() as conn:
            row = conn.execute(
                f"{self._ENTRY} WHERE issuer_id = ? AND serial = ?",
                (issuer_id, serial),
            ).fetchone()
            if row is not None and row[3] is not None:
                return self._entry(issuer_id, row), False
            seq_row = conn.execute(
                "SELECT COALESCE(MAX(revocation_seq), 0) + 1 FROM certificates WHERE issuer_id = ?",
                (issuer_id,),
            ).fetchone()
            conn.execute(
                "INSERT INTO certificates (issuer_id, serial, revoked_at, reason, revocation_seq) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (issuer_id, serial) DO UPDATE SET "
                "revoked_at = excluded.revoked_at, reason = excluded.reason, "
                "revocation_seq = excluded.revocation_seq",
                (issuer_id, serial, revoked_at, reason, seq_row[0]),
            )
            row = conn.execute(
                f"{self._ENTRY} WHERE issuer_id = ? AND serial = ?",
                (issuer_id, serial),
            ).fetchone()
            return self._entry(issuer_id, row), True

    def _status_sync(self, issuer_id: str, serial: int) -> CertificateStatus:
        row = (
            self._conn()
            .execute(
                f"{self._ENTRY} WHERE issuer_id = ? AND serial = ?",
                (issuer_id, format_serial_hex(serial)),
            )
            .fetchone()
        )
        if row is None:
            return CertificateStatus(serial, "unknown")
        return self._entry(issuer_id, row).status()

    def _revocations_sync(self, issuer_id: str) -> list[LedgerEntry]:
        rows = (
            self._conn()
            .execute(
                f"{self._ENTRY} WHERE issuer_id = ? AND revoked_at IS NOT NULL "
                "ORDER BY revocation_seq",
                (issuer_id,),
            )
            .fetchall()
        )
        return [self._entry(issuer_id, row) for row in rows]

    async def record_issued(self, issuer_id: str, certificate: x509.Certificate) -> None:
        await self._run(
            self._issued_sync,
            issuer_id,
            format_serial_hex(certificate.serial_number),
            certificate.subject.rfc4514_string(),
            _ts(certificate.not_valid_after_utc),
        )

    async def record_revocation(
        self,
        issuer_id: str,
        serial: int,
        reason: RevocationReason,
        revoked_at: dt.datetime,
    ) -> tuple[LedgerEntry, bool]:
        return await self._run(
            self._revoke_sync, issuer_id, format_serial_hex(serial), int(reason), _ts(revoked_at)
        )

    async def status(self, issuer_id: str, serial: int) -> CertificateStatus:
        return await self._read(self._status_sync, issuer_id, serial)

    async def revocations(self, issuer_id: str) -> Sequence[LedgerEntry]:
        return await self._read(self._revocations_sync, issuer_id)

    # -- lifecycle ---------------------------------------------------------------------

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._writer.shutdown, wait=True)
        await asyncio.to_thread(self._reader.shutdown, wait=True)
        with self._conn_lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()

    async def __aenter__(self) -> SQLiteStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
