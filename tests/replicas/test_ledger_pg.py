"""The Local CA's shared ledger against real PostgreSQL, without a server: revocation
numbers commit in order, every call is bounded on a cut network, and a bad ``ledger_url``
fails at once with libpq's reason and never shows its password (ADR 0024)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography import x509

from certctl_core import RevocationReason
from certctl_localca._pgledger import SharedLedger, SharedLedgerError
from tests.postgres import PostgresCluster
from tests.replicas.proxy import Proxy


def test_a_revocation_committed_late_is_never_skipped_by_an_incremental_reader(
    postgres: PostgresCluster,
) -> None:
    url = postgres.new_database()
    ledger = SharedLedger.open(url, "ca")
    try:
        for serial in (1, 2):
            assert ledger.record_issued(serial, 0, 10)
        # Replica X's revocation of 0x01 stays open for a while (a trigger sleeps in its
        # transaction, after its row got its number) ...
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(
                "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF NEW.serial = '01' THEN PERFORM pg_sleep(0.6); END IF; RETURN NEW; END $$"
            )
            admin.execute(
                "CREATE TRIGGER slow BEFORE UPDATE ON localca_certificates "
                "FOR EACH ROW EXECUTE FUNCTION slow()"
            )
            x = threading.Thread(target=ledger.revoke, args=(1, 1, RevocationReason.KEY_COMPROMISE))
            x.start()
            deadline = time.monotonic() + 5
            while not admin.execute(
                "SELECT 1 FROM pg_stat_activity WHERE wait_event = 'PgSleep'"
            ).fetchall():
                assert time.monotonic() < deadline
                time.sleep(0.01)
            # ... while replica Y revokes 0x02, and replica Z reads what is new for its CRL.
            ledger.revoke(2, 1, RevocationReason.KEY_COMPROMISE)
            first = ledger.revocations_since(0)
            x.join()
        after = ledger.revocations_since(first[-1][3])
        assert sorted(row[0] for row in first + after) == [1, 2]
    finally:
        ledger.close()


def test_a_ledger_call_on_a_cut_network_fails_within_its_bound(
    postgres: PostgresCluster,
) -> None:
    proxy = Proxy(postgres.port)
    ledger = SharedLedger.open(postgres.url(port=proxy.port), "cut", call_seconds=1.0)
    try:
        assert ledger.lookup(1) is None
        proxy.cut()
        start = time.monotonic()
        with pytest.raises(SharedLedgerError, match="did not answer within 1 s"):
            ledger.lookup(1)
        assert time.monotonic() - start < 3.0
        proxy.heal()
        deadline = time.monotonic() + 10
        while True:  # the broken connection was discarded: the next calls work again
            try:
                assert ledger.lookup(1) is None
                break
            except SharedLedgerError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
    finally:
        proxy.close()
        ledger.close()


def test_a_bad_ledger_url_fails_at_once_with_the_reason_and_never_the_password(
    postgres: PostgresCluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good = postgres.url()
    malformed = good.replace(postgres.password, "pa%zzSECRET-one")
    wrong = good.replace(postgres.password, "SECRET-two")
    for url, reason in ((malformed, "not a PostgreSQL connection URL"), (wrong, "password")):
        start = time.monotonic()
        with pytest.raises(SharedLedgerError, match=reason) as info:
            SharedLedger.open(url, "bad")
        assert time.monotonic() - start < 2.0
        assert "SECRET" not in f"{info.value} {info.value!r}"
    assert "SECRET" not in caplog.text
    assert postgres.password not in caplog.text


def test_three_replicas_opening_an_empty_scope_at_once_make_one_ca(
    postgres: PostgresCluster,
) -> None:
    url = postgres.new_database()
    ledgers = [SharedLedger.open(url, "new") for _ in range(3)]
    made: list[int] = []
    got: list[tuple[bytes, bytes]] = []
    lock = threading.Lock()
    start = threading.Barrier(3)

    def create() -> tuple[bytes, bytes, bytes]:
        with lock:
            made.append(1)
        time.sleep(0.1)  # key generation takes a while: the others must wait, not create
        return b"chain-%d" % len(made), b"key", b"root key"

    def open_ca(ledger: SharedLedger) -> None:
        start.wait()
        result = ledger.ca(create)
        with lock:
            got.append(result)

    threads = [threading.Thread(target=open_ca, args=(ledger,)) for ledger in ledgers]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for ledger in ledgers:
            ledger.close()
    assert len(made) == 1
    assert len(got) == 3 and len(set(got)) == 1


async def _check_while_ticking(issuer: Any) -> tuple[Any, int]:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.02)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        report = await issuer.check()
    finally:
        ticker.cancel()
    return report, ticks


def test_a_health_check_waiting_on_the_ledger_does_not_block_the_event_loop(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    from certctl_localca import build_localca_issuer

    url = postgres.new_database()
    config = {"state_dir": str(tmp_path), "key_password": "pw-0123", "ledger_url": url}

    async def main() -> tuple[Any, int]:
        issuer = await build_localca_issuer("health", config)
        try:
            with psycopg.connect(url) as other:  # the table is locked for 0.5 s
                other.execute("LOCK TABLE localca_certificates IN ACCESS EXCLUSIVE MODE")
                threading.Timer(0.5, other.commit).start()
                return await _check_while_ticking(issuer)
        finally:
            await issuer.close()

    report, ticks = asyncio.run(main())
    assert ticks >= 10  # the loop ran other tasks while the check waited
    assert any(line.name == "ledger" and line.ok for line in report.checks)


def test_a_ca_is_stored_at_first_use_so_a_refused_put_leaves_none(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    """A connector built and never used (a PUT refused after its build, with a mistyped
    key_password) stores no CA; of two built before either stored one (two replicas), the
    first to be used stores its CA and the other serves that same CA."""
    from certctl_localca import build_localca_issuer

    url = postgres.new_database()

    def body(password: str) -> dict[str, Any]:
        return {"state_dir": str(tmp_path), "key_password": password, "ledger_url": url}

    def stored_cas() -> int:
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT count(*) FROM localca_ca").fetchone()
        return 0 if row is None else int(row[0])

    async def main() -> None:
        mistyped = await build_localca_issuer("lazy", body("mistyped-0123"))
        await mistyped.close()
        assert stored_cas() == 0
        a = await build_localca_issuer("lazy", body("right-0123"))
        b = await build_localca_issuer("lazy", body("right-0123"))
        try:
            chain_a = await a.ca_chain()
            assert stored_cas() == 1
            assert await b.ca_chain() == chain_a
            crl = x509.load_der_x509_crl(await b.crl())
            assert crl.issuer == chain_a[0].subject
            assert crl.is_signature_valid(chain_a[0].public_key())  # type: ignore[arg-type]
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())
