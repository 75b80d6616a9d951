"""The ledger: every serial this CA issued, the revocations, and the CRL number.

It is one SQLite database (``ledger.sqlite3``, mode 0600) in the state directory, in WAL
mode with ``synchronous=FULL``: a serial handed out or a revocation acknowledged survives
a crash. Serials are stored as lower-case hex text (they exceed SQLite's 64-bit
integers); the primary key makes a reused serial impossible.

Threading: writes and bulk reads run in worker threads on a writer connection guarded by
a lock; point reads (``lookup``) use a separate reader connection, take microseconds, and
are meant to be called on the event loop (WAL readers never wait for the writer).
Errors are ``sqlite3.Error`` / ``OSError``; the connector translates them.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

import attrs

from certctl_core import RevocationReason
from certctl_core.domain import format_serial_hex

__all__ = ["LEDGER_FILE", "Ledger", "LedgerEntry", "RevokedRow"]

LEDGER_FILE = "ledger.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS certificates (
    serial TEXT PRIMARY KEY,          -- lower-case hex, even number of digits
    issued_at INTEGER NOT NULL,       -- POSIX seconds
    not_after INTEGER NOT NULL,
    revoked_at INTEGER,               -- NULL while good
    reason INTEGER,                   -- RFC 5280 CRLReason code
    revocation_seq INTEGER UNIQUE     -- order of revocations, for incremental CRLs
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


@attrs.frozen
class LedgerEntry:
    """What the ledger knows of one serial."""

    serial: int
    issued_at: int
    not_after: int
    revoked_at: int | None
    reason: RevocationReason | None


#: (serial, revoked_at, reason code, revocation_seq)
RevokedRow = tuple[int, int, int, int]


#: How long a write waits for another process holding the ledger's lock (a backup, an
#: operator's sqlite3 shell) before the call fails as transient (retry_after 1 s). One
#: process runs a Local CA, so only outsiders contend; an API call should not hang 10 s.
BUSY_TIMEOUT_SECONDS = 2.0


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_SECONDS
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


class Ledger:
    """Issued serials and revocations. Build with :meth:`open`; call :meth:`close` once."""

    #: False: point reads take microseconds and may run on the event loop.
    remote = False

    def __init__(self, path: Path, writer: sqlite3.Connection, reader: sqlite3.Connection):
        self.path = path
        self._writer = writer
        self._reader = reader
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()

    @classmethod
    def open(cls, state_dir: Path) -> Ledger:
        """Open (creating if needed, mode 0600) the ledger of ``state_dir``."""
        path = state_dir / LEDGER_FILE
        # Create the file ourselves so it is 0600 from the start; SQLite gives its WAL and
        # shared-memory files the same mode as the database file.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        writer = _connect(path)
        try:
            writer.executescript(_SCHEMA)
            reader = _connect(path)
        except BaseException:
            writer.close()
            raise
        return cls(path, writer, reader)

    def close(self) -> None:
        with self._write_lock, self._read_lock:
            self._reader.close()
            self._writer.close()

    def record_issued(self, serial: int, issued_at: int, not_after: int) -> bool:
        """Record a new serial; False (nothing written) if it was issued before."""
        with self._write_lock:
            try:
                self._writer.execute(
                    "INSERT INTO certificates (serial, issued_at, not_after) VALUES (?, ?, ?)",
                    (format_serial_hex(serial), issued_at, not_after),
                )
            except sqlite3.IntegrityError:
                return False
            return True

    def revoke(
        self, serial: int, revoked_at: int, reason: RevocationReason
    ) -> tuple[LedgerEntry | None, bool]:
        """Mark ``serial`` revoked. Returns (entry, newly_revoked).

        ``entry`` is None when the serial was never issued; for a serial already revoked it
        holds the first revocation's time and reason and ``newly_revoked`` is False.
        """
        key = format_serial_hex(serial)
        with self._write_lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                entry = self._lookup(conn, serial)
                if entry is None or entry.revoked_at is not None:
                    conn.execute("COMMIT")
                    return entry, False
                conn.execute(
                    "UPDATE certificates SET revoked_at = ?, reason = ?, revocation_seq = "
                    "(SELECT coalesce(max(revocation_seq), 0) + 1 FROM certificates) "
                    "WHERE serial = ?",
                    (revoked_at, int(reason), key),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return attrs.evolve(entry, revoked_at=revoked_at, reason=reason), True

    def lookup(self, serial: int) -> LedgerEntry | None:
        """The entry of ``serial``, or None if this CA never issued it. A point read."""
        with self._read_lock:
            return self._lookup(self._reader, serial)

    @staticmethod
    def _lookup(conn: sqlite3.Connection, serial: int) -> LedgerEntry | None:
        row = conn.execute(
            "SELECT issued_at, not_after, revoked_at, reason FROM certificates WHERE serial = ?",
            (format_serial_hex(serial),),
        ).fetchone()
        if row is None:
            return None
        issued_at, not_after, revoked_at, reason = row
        return LedgerEntry(
            serial,
            issued_at,
            not_after,
            revoked_at,
            RevocationReason(reason) if reason is not None else None,
        )

    def revocations_since(self, seq: int) -> list[RevokedRow]:
        """Revocations with ``revocation_seq > seq``, in revocation order."""
        with self._write_lock:
            rows = self._writer.execute(
                "SELECT serial, revoked_at, reason, revocation_seq FROM certificates "
                "WHERE revocation_seq > ? ORDER BY revocation_seq",
                (seq,),
            ).fetchall()
        return [(int(s, 16), at, reason, n) for s, at, reason, n in rows]

    def next_crl_number(self) -> int:
        """Increment and return the persisted CRL number (1 for the first CRL)."""
        with self._write_lock:
            (value,) = self._writer.execute(
                "INSERT INTO counters (name, value) VALUES ('crl_number', 1) "
                "ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value"
            ).fetchone()
        return int(value)

    def counts(self) -> tuple[int, int]:
        """(certificates issued, certificates revoked)."""
        with self._read_lock:
            issued, revoked = self._reader.execute(
                "SELECT count(*), count(revoked_at) FROM certificates"
            ).fetchone()
        return int(issued), int(revoked)

    def import_revoked(self, rows: Iterable[tuple[int, int, int, RevocationReason]]) -> None:
        """Bulk-load (serial, issued_at, not_after, reason) as issued and revoked at
        ``issued_at``, in one transaction: for benchmarks and migrations."""
        with self._write_lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                (seq,) = conn.execute(
                    "SELECT coalesce(max(revocation_seq), 0) FROM certificates"
                ).fetchone()
                conn.executemany(
                    "INSERT INTO certificates VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        (format_serial_hex(s), at, end, at, int(r), seq + i)
                        for i, (s, at, end, r) in enumerate(rows, start=1)
                    ),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
