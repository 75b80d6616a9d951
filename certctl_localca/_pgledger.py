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

Every call is bounded: the server ends a statement or a lock wait after 5 s
(``statement_timeout``, ``lock_timeout``), a connection attempt gives up after 5 s, and a
watchdog cuts the connection of a call still waiting after ``call_seconds`` (10 s): a
network cut that swallows packets, which no server-side timeout can notice, fails the call
instead of holding its thread forever.

Revocations of one scope take a transaction-scoped advisory lock on the scope before their
sequence number and hold it until COMMIT, so their order in the sequence is their commit
order: a reader that saw revocation *n* has seen every earlier one (the CRL is built
incrementally from the last number it listed and would otherwise miss one committed late).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolTimeout

from certctl_core import RevocationReason
from certctl_core.domain import format_serial_hex
from certctl_localca._ledger import LedgerEntry, RevokedRow

__all__ = ["SharedLedger", "SharedLedgerError"]

log = logging.getLogger(__name__)

#: pg_advisory_xact_lock key of schema creation and CA creation ("localca" in ASCII).
_LOCK = 0x6C6F63616C6361
#: pg_advisory_xact_lock(class, hashtext(scope)) serialises one scope's revocations ("loca").
_REVOKE_LOCK = 0x6C6F6361
#: The default bound of one ledger call, in seconds (see the module docstring).
CALL_SECONDS = 10.0
#: Connection parameters added unless the URL sets them: a dead peer or a server that
#: stops answering ends a call instead of blocking it.
_BOUNDS = {
    "connect_timeout": "5",
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "3",
    "tcp_user_timeout": "10000",
    "options": "-c statement_timeout=5000 -c lock_timeout=5000 "
    "-c idle_in_transaction_session_timeout=10000",
    "application_name": "certctl-localca",
}

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


def _first_line(exc: BaseException) -> str:
    """libpq's first line (it names host and port, never the password)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def bounded_conninfo(url: str) -> str:
    """``url`` with the bounds of :data:`_BOUNDS` it does not set itself. Raises
    SharedLedgerError (never echoing the URL, which may hold a password) if it is not a
    PostgreSQL connection string."""
    try:
        params = conninfo_to_dict(url)
        return make_conninfo(url, **{k: v for k, v in _BOUNDS.items() if k not in params})
    except psycopg.Error:
        raise SharedLedgerError(
            "ledger_url is not a PostgreSQL connection URL "
            "(postgresql://user:password@host:5432/database; percent-encode special "
            "characters of the password)"
        ) from None


@contextlib.contextmanager
def _watchdog(conn: psycopg.Connection[TupleRow], seconds: float) -> Iterator[None]:
    """Shut the connection's socket down if the block is still running after
    ``seconds``: the blocked call then fails (the pool discards the broken connection)."""
    fired = threading.Event()

    def cut() -> None:
        fired.set()
        with contextlib.suppress(OSError, psycopg.Error, ValueError):
            fd = os.dup(conn.pgconn.socket)
            with socket.socket(fileno=fd) as sock:
                sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(seconds, cut)
    timer.daemon = True
    timer.start()
    try:
        yield
    except psycopg.Error as exc:
        if fired.is_set():
            raise SharedLedgerError(
                f"the shared ledger did not answer within {seconds:g} s"
            ) from None
        raise SharedLedgerError(_first_line(exc)) from None
    finally:
        timer.cancel()


class SharedLedger:
    """The ledger of one Local CA in PostgreSQL. Build with :meth:`open`."""

    remote = True

    def __init__(
        self,
        pool: ConnectionPool[psycopg.Connection[TupleRow]],
        scope: str,
        call_seconds: float = CALL_SECONDS,
    ):
        self._pool = pool
        self.scope = scope
        self._call_seconds = call_seconds

    def __repr__(self) -> str:
        return f"SharedLedger(scope={self.scope!r})"

    @classmethod
    def open(cls, url: str, scope: str, *, call_seconds: float = CALL_SECONDS) -> SharedLedger:
        """Connect and create the tables (once, under an advisory lock). Raises
        SharedLedgerError, naming libpq's reason (never the password), at once for a
        malformed URL or a refused login and within ``call_seconds`` for a server that
        does not answer."""
        conninfo = bounded_conninfo(url)
        # One direct connection first: its error is the one reported (a wrong password is
        # not retried for seconds by the pool, nor logged by it).
        try:
            conn = psycopg.connect(conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise SharedLedgerError(_first_line(exc)) from None
        with conn, _watchdog(conn, call_seconds), conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
            for statement in _SCHEMA:
                conn.execute(statement)
        pool: ConnectionPool[psycopg.Connection[TupleRow]] = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=4,
            kwargs={"autocommit": True},
            open=False,
            timeout=5.0,
            name="certctl-localca",
        )
        try:
            pool.open(wait=True, timeout=call_seconds)
        except PoolTimeout:
            pool.close()
            raise SharedLedgerError(
                f"the shared ledger could not be connected to within {call_seconds:g} s"
            ) from None
        except BaseException:
            pool.close()
            raise
        return cls(pool, scope, call_seconds)

    @contextlib.contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[TupleRow]]:
        try:
            with self._pool.connection() as conn, _watchdog(conn, self._call_seconds):
                yield conn
        except (psycopg.Error, PoolTimeout) as exc:
            raise SharedLedgerError(_first_line(exc)) from None

    def close(self) -> None:
        self._pool.close()

    # -- the CA ------------------------------------------------------------------------

    def find_ca(self) -> tuple[bytes, bytes] | None:
        """(chain PEM, issuing key PEM) of this scope's CA, None if none is stored yet."""
        with self._conn() as conn:
            row = conn.execute(
                "SELECT chain_pem, key_pem FROM localca_ca WHERE scope = %s", (self.scope,)
            ).fetchone()
        return None if row is None else (bytes(row[0]), bytes(row[1]))

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
        with self._conn() as conn, conn.transaction():
            # The number is taken under the scope's lock, held until COMMIT: numbers
            # commit in order (see the module docstring).
            conn.execute(
                "SELECT pg_advisory_xact_lock(%s::int4, hashtext(%s))", (_REVOKE_LOCK, self.scope)
            )
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
