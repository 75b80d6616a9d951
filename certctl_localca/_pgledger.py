"""The shared ledger: one Local CA served by several server replicas (ADR 0024).

With ``ledger_url`` the Local CA keeps in PostgreSQL what it keeps in ``state_dir``
otherwise, so that every replica issues from the same CA:

* the CA itself (chain and issuing key, the key encrypted with ``key_password`` as in the
  files; the host seals ``key_password`` and ``ledger_url`` in its store), created once by
  whichever replica builds the issuer first (an advisory lock serialises creation);
* the serials (random 159 bits; the primary key refuses a reused one, so two replicas can
  never hand out the same serial);
* revocations, in one order (a sequence), and the CRL: one CRL number sequence, and the
  latest signed CRL itself, so every replica serves the same CRL and numbers never go
  back whichever replica a client asks.

Rows are scoped by the issuer id. The interface is the SQLite :class:`Ledger`'s; errors
are raised as :class:`SharedLedgerError` (an ``OSError``: the connector reports it as
transient). Calls block (a pooled psycopg connection): the connector runs them in threads.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolTimeout

from certctl_core import RevocationReason
from certctl_core.domain import format_serial_hex
from certctl_localca._ledger import LedgerEntry, RevokedRow

__all__ = ["SharedLedger", "SharedLedgerError"]

log = logging.getLogger(__name__)

#: pg_advisory_xact_lock key of schema creation and CA creation ("localca" in ASCII).
_LOCK = 0x6C6F63616C6361

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS localca_ca (
        scope TEXT PRIMARY KEY,
        chain_pem BYTEA NOT NULL,     -- issuing CA first, root last
        key_pem BYTEA NOT NULL,       -- issuing CA key, PKCS#8 encrypted with key_password
        root_key_pem BYTEA NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS localca_certificates (
        scope TEXT NOT NULL,
        serial TEXT NOT NULL,
        issued_at BIGINT NOT NULL,
        not_after BIGINT NOT NULL,
        revoked_at BIGINT,
        reason SMALLINT,
        revocation_seq BIGINT,
        PRIMARY KEY (scope, serial))""",
    """CREATE INDEX IF NOT EXISTS localca_revoked
        ON localca_certificates (scope, revocation_seq) WHERE revoked_at IS NOT NULL""",
    "CREATE SEQUENCE IF NOT EXISTS localca_revocation_seq",
    """CREATE TABLE IF NOT EXISTS localca_crl (
        scope TEXT PRIMARY KEY,
        number BIGINT NOT NULL,       -- the last CRL number signed
        seq BIGINT NOT NULL,          -- the last revocation it lists
        der BYTEA NOT NULL,
        refresh_at BIGINT NOT NULL)""",
)


class SharedLedgerError(OSError):
    """The shared ledger could not be used (PostgreSQL unreachable or refusing)."""


class SharedLedger:
    """The ledger of one Local CA in PostgreSQL. Build with :meth:`open`."""

    remote = True

    def __init__(self, pool: ConnectionPool[psycopg.Connection[TupleRow]], scope: str):
        self._pool = pool
        self.scope = scope

    def __repr__(self) -> str:
        return f"SharedLedger(scope={self.scope!r})"

    @classmethod
    def open(cls, url: str, scope: str) -> SharedLedger:
        """Connect and create the tables (once, under an advisory lock)."""
        pool: ConnectionPool[psycopg.Connection[TupleRow]] = ConnectionPool(
            url,
            min_size=1,
            max_size=4,
            kwargs={"autocommit": True},
            open=False,
            timeout=5.0,
            name="certctl-localca",
        )
        ledger = cls(pool, scope)
        try:
            pool.open(wait=True, timeout=10.0)
            with ledger._conn() as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
                for statement in _SCHEMA:
                    conn.execute(statement)
        except BaseException:
            pool.close()
            raise
        return ledger

    @contextlib.contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[TupleRow]]:
        try:
            with self._pool.connection() as conn:
                yield conn
        except (psycopg.Error, PoolTimeout) as exc:
            # libpq names host and port, never the password.
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise SharedLedgerError(f"{type(exc).__name__}: {first}") from None

    def close(self) -> None:
        self._pool.close()

    # -- the CA ------------------------------------------------------------------------

    def ca(self, create: Callable[[], tuple[bytes, bytes, bytes]]) -> tuple[bytes, bytes]:
        """(chain PEM, issuing key PEM) of this scope's CA; ``create()`` gives (chain,
        key, root key) when there is none yet (called by one replica only)."""
        with self._conn() as conn:
            row = conn.execute(
                "SELECT chain_pem, key_pem FROM localca_ca WHERE scope = %s", (self.scope,)
            ).fetchone()
            if row is not None:
                return bytes(row[0]), bytes(row[1])
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
                row = conn.execute(
                    "SELECT chain_pem, key_pem FROM localca_ca WHERE scope = %s", (self.scope,)
                ).fetchone()
                if row is not None:
                    return bytes(row[0]), bytes(row[1])
                chain, key, root_key = create()
                conn.execute(
                    "INSERT INTO localca_ca VALUES (%s, %s, %s, %s)",
                    (self.scope, chain, key, root_key),
                )
                log.info("local CA %s created in the shared ledger", self.scope)
                return chain, key

    # -- the Ledger interface ----------------------------------------------------------

    def record_issued(self, serial: int, issued_at: int, not_after: int) -> bool:
        with self._conn() as conn:
            cursor = conn.execute(
                "INSERT INTO localca_certificates (scope, serial, issued_at, not_after) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (self.scope, format_serial_hex(serial), issued_at, not_after),
            )
            return cursor.rowcount == 1

    def revoke(
        self, serial: int, revoked_at: int, reason: RevocationReason
    ) -> tuple[LedgerEntry | None, bool]:
        key = format_serial_hex(serial)
        with self._conn() as conn:
            row = conn.execute(
                "UPDATE localca_certificates SET revoked_at = %s, reason = %s, "
                "revocation_seq = nextval('localca_revocation_seq') "
                "WHERE scope = %s AND serial = %s AND revoked_at IS NULL "
                "RETURNING issued_at, not_after",
                (revoked_at, int(reason), self.scope, key),
            ).fetchone()
            if row is not None:
                issued_at, not_after = row
                entry = LedgerEntry(serial, int(issued_at), int(not_after), revoked_at, reason)
                return entry, True
            return self._lookup(conn, serial), False

    def lookup(self, serial: int) -> LedgerEntry | None:
        with self._conn() as conn:
            return self._lookup(conn, serial)

    def _lookup(self, conn: psycopg.Connection[TupleRow], serial: int) -> LedgerEntry | None:
        row = conn.execute(
            "SELECT issued_at, not_after, revoked_at, reason FROM localca_certificates "
            "WHERE scope = %s AND serial = %s",
            (self.scope, format_serial_hex(serial)),
        ).fetchone()
        if row is None:
            return None
        issued_at, not_after, revoked_at, reason = row
        return LedgerEntry(
            serial,
            int(issued_at),
            int(not_after),
            None if revoked_at is None else int(revoked_at),
            None if reason is None else RevocationReason(reason),
        )

    def revocations_since(self, seq: int) -> list[RevokedRow]:
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT serial, revoked_at, reason, revocation_seq FROM localca_certificates "
                "WHERE scope = %s AND revocation_seq > %s ORDER BY revocation_seq",
                (self.scope, seq),
            ).fetchall()
        return [(int(str(s), 16), int(at), int(r), int(n)) for s, at, r, n in rows]

    def next_crl_number(self) -> int:
        """Not used with a shared ledger (see :meth:`shared_crl`); kept for the interface."""
        raise NotImplementedError("a shared ledger numbers CRLs in shared_crl()")

    def shared_crl(self, seq: int, now: int, sign: Callable[[int], tuple[bytes, int]]) -> bytes:
        """The CRL every replica serves: the stored one while it lists every revocation up
        to ``seq`` and is not due; else ``sign(number)`` -> (DER, refresh_at) with the next
        number, stored. Signing is serialised by the row lock: one number sequence."""
        with self._conn() as conn:
            row = conn.execute(
                "SELECT number, seq, der, refresh_at FROM localca_crl WHERE scope = %s",
                (self.scope,),
            ).fetchone()
            if row is not None and int(row[1]) >= seq and now < int(row[3]):
                return bytes(row[2])
            with conn.transaction():
                conn.execute(
                    "INSERT INTO localca_crl VALUES (%s, 0, -1, '', 0) ON CONFLICT DO NOTHING",
                    (self.scope,),
                )
                row = conn.execute(
                    "SELECT number, seq, der, refresh_at FROM localca_crl WHERE scope = %s "
                    "FOR UPDATE",
                    (self.scope,),
                ).fetchone()
                assert row is not None
                if int(row[1]) >= seq and now < int(row[3]):
                    return bytes(row[2])
                number = int(row[0]) + 1
                der, refresh_at = sign(number)
                conn.execute(
                    "UPDATE localca_crl SET number = %s, seq = %s, der = %s, refresh_at = %s "
                    "WHERE scope = %s",
                    (number, seq, der, refresh_at, self.scope),
                )
                return der

    def counts(self) -> tuple[int, int]:
        with self._conn() as conn:
            row = conn.execute(
                "SELECT count(*), count(revoked_at) FROM localca_certificates WHERE scope = %s",
                (self.scope,),
            ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])
