"""Reads never queue behind writes (issue 15): with another process holding SQLite's write
lock, writes wait (up to ``busy_timeout``) while status lookups, the OCSP responder's
reads, and config reads answer at once (WAL readers do not wait for a writer)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from certctl_core import RevocationReason
from certctl_host.storage import DB_FILE, SQLiteStore, StorageUnavailableError
from tests.storage.test_sqlite_store import certificate, record

pytestmark = pytest.mark.anyio

#: A behaviour bound, not a benchmark (see tests/server/test_robustness.py).
BOUND = 2.0

HOLD_WRITE_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(60)
"""


def hold_write_lock(database: Path) -> subprocess.Popen[str]:
    """Another process holding the database's write lock, until killed."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_WRITE_LOCK, str(database)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked"
    return holder


async def test_reads_answer_while_writes_wait_for_another_processs_write_lock(
    tmp_path: Path,
) -> None:
    store = await SQLiteStore.open(tmp_path, env={})
    try:
        await store.put_issuer(record("corp"))
        await store.record_issued("corp", certificate(7))
        holder = hold_write_lock(tmp_path / DB_FILE)
        try:
            # More queued writes than the store has threads: each waits for the lock.
            writes = [
                asyncio.ensure_future(store.record_issued("corp", certificate(100 + i)))
                for i in range(8)
            ] + [
                asyncio.ensure_future(
                    store.record_revocation(
                        "corp",
                        7,
                        RevocationReason.KEY_COMPROMISE,
                        certificate(7).not_valid_before_utc,
                    )
                )
            ]
            await asyncio.sleep(0.5)
            assert not any(w.done() for w in writes), "the writes did not wait for the lock"
            status = await asyncio.wait_for(store.status("corp", 7), BOUND)
            assert status.state == "good"  # the revocation is still waiting
            assert (await asyncio.wait_for(store.get_issuer("corp"), BOUND)) is not None
            assert len(await asyncio.wait_for(store.list_issuers(), BOUND)) == 1
            assert await asyncio.wait_for(store.revocations("corp"), BOUND) == []
            assert await asyncio.wait_for(store.config_revision(), BOUND) >= 1
        finally:
            holder.kill()
            holder.wait()
            if holder.stdout is not None:
                holder.stdout.close()
        for done in await asyncio.gather(*writes, return_exceptions=True):
            assert done is None or isinstance(done, tuple | StorageUnavailableError), done
        assert (await store.status("corp", 7)).state == "revoked"
    finally:
        await store.aclose()


async def test_reader_connections_cannot_write(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path, env={})
    try:

        def write_on_a_reader() -> None:
            store._conn().execute("INSERT INTO meta VALUES ('x', 'y')")

        with pytest.raises(StorageUnavailableError, match="readonly"):
            await store._read(write_on_a_reader)
    finally:
        await store.aclose()
