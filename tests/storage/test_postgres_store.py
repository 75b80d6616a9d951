"""What only the PostgreSQL store has: migrations safe for replicas starting at once,
change notifications, replica reports, and a password that never shows."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time

import pytest

from certctl_core import RevocationReason
from certctl_core.errors import CertctlError, ConfigError
from certctl_host.storage import KEY_ENV, ServerKey, ServerKeyError, StorageUnavailableError
from certctl_host.storage import open_store as open_any_store
from certctl_host.storage._postgres import PostgresStore, redact_url
from tests.postgres import PostgresCluster, free_port
from tests.storage.test_sqlite_store import SECRET_FIELDS, certificate, record

pytestmark = pytest.mark.anyio


def key() -> ServerKey:
    return ServerKey.from_text(ServerKey.generate_text(), source=KEY_ENV)


async def test_replicas_starting_at_once_migrate_once(postgres: PostgresCluster) -> None:
    url = postgres.new_database()
    shared = key()
    stores = await asyncio.gather(*(PostgresStore.open(url, key=shared) for _ in range(6)))
    try:
        saved = await stores[0].put_issuer(record(), secret_fields=SECRET_FIELDS)
        for store in stores:
            loaded = await store.get_issuer("corp")
            assert loaded is not None and loaded.revision == saved.revision
    finally:
        for store in stores:
            await store.aclose()
    import psycopg

    with psycopg.connect(url) as conn:
        rows: list[tuple[str, str]] = conn.execute(
            "SELECT name, value FROM meta ORDER BY name"
        ).fetchall()
    assert dict(rows)["schema_version"] == "1"
    assert sum(1 for name, _ in rows if name == "key_check") == 1


async def test_newer_schema_is_refused(postgres: PostgresCluster) -> None:
    url = postgres.new_database()
    shared = key()
    async with await PostgresStore.open(url, key=shared):
        pass
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE name = 'schema_version'")
    with pytest.raises(ServerKeyError, match="newer certctl"):
        await PostgresStore.open(url, key=shared)


async def test_listener_hears_config_writes_with_their_revision_and_revocations(
    postgres: PostgresCluster,
) -> None:
    url = postgres.new_database()
    shared = key()
    async with (
        await PostgresStore.open(url, key=shared) as writer,
        await PostgresStore.open(url, key=shared) as reader,
        reader.listener() as feed,
    ):
        saved = await writer.put_issuer(record(), secret_fields=SECRET_FIELDS)
        changes = await feed.changes(5)
        assert [(c.kind, c.key, c.revision) for c in changes] == [
            ("config", "corp", saved.revision)
        ]
        await writer.record_issued("corp", certificate(7))
        await writer.record_revocation(
            "corp", 7, RevocationReason.KEY_COMPROMISE, dt.datetime.now(dt.UTC)
        )
        changes = await feed.changes(5)
        assert [(c.kind, c.key) for c in changes] == [("revocation", "corp")]
        # Nothing else: the wait ends empty.
        assert await feed.changes(0.05) == []
        assert await feed.revision() == saved.revision
        # The other replica answers at once from the shared ledger.
        assert (await reader.status("corp", 7)).state == "revoked"


async def test_replica_reports_are_shared(postgres: PostgresCluster) -> None:
    url = postgres.new_database()
    shared = key()
    async with await PostgresStore.open(url, key=shared) as a:
        await a.report_replica("a", {"corp": {"revision": 3, "generation": 2, "error": None}})
        await a.report_replica("b", {"corp": {"revision": 2, "generation": 1, "error": "x"}})
        reports = await a.replicas()
        assert [(r, served["corp"]["revision"]) for r, _, _, served in reports] == [
            ("a", 3),
            ("b", 2),
        ]
        await a.forget_replica("b")
        assert [r for r, _, _, _ in await a.replicas()] == ["a"]


async def test_password_never_shows(
    postgres: PostgresCluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = postgres.new_database()
    assert postgres.password in url
    store = await PostgresStore.open(url, key=key())
    try:
        assert postgres.password not in repr(store)
        assert "********" in repr(store)
    finally:
        await store.aclose()
    wrong = url.replace(postgres.password, "not-the-password-0123")
    nowhere = postgres.url(port=free_port()).replace("connect_timeout=5", "connect_timeout=1")
    for bad in (wrong, nowhere):
        with pytest.raises(CertctlError) as info:
            await PostgresStore.open(bad, key=key(), statement_seconds=2, retry_seconds=0.5)
        assert isinstance(info.value, StorageUnavailableError)
        text = f"{info.value} {info.value!r} {info.value.hint}"
        assert postgres.password not in text and "not-the-password-0123" not in text
    assert postgres.password not in caplog.text
    assert "not-the-password-0123" not in caplog.text
    assert redact_url(url).endswith(url.rsplit("/", 1)[1].split("?")[0])


async def test_open_store_picks_postgres_and_needs_the_key_from_the_environment(
    postgres: PostgresCluster, tmp_path: object
) -> None:
    from pathlib import Path

    url = postgres.new_database()
    with pytest.raises(ServerKeyError, match=KEY_ENV):
        await open_any_store(Path(str(tmp_path)), database_url=url, env={})
    with pytest.raises(ConfigError, match="database_url"):
        await open_any_store(
            Path(str(tmp_path)),
            database_url="not a url = = =",
            env={KEY_ENV: ServerKey.generate_text()},
        )
    store = await open_any_store(
        Path(str(tmp_path)), database_url=url, env={KEY_ENV: ServerKey.generate_text()}
    )
    try:
        assert isinstance(store, PostgresStore)
    finally:
        await store.aclose()


PG_WRITER = """
import asyncio, datetime as dt, os, sys
from certctl_core import RevocationReason
from certctl_host.storage import KEY_ENV, ServerKey
from certctl_host.storage._postgres import PostgresStore

async def main():
    # Secrets come from the environment: a command line is visible to every local user.
    key = ServerKey.from_text(os.environ[KEY_ENV], source=KEY_ENV)
    async with await PostgresStore.open(os.environ["TEST_DATABASE_URL"], key=key) as store:
        base = int(sys.argv[1])
        for i in range(base, base + 100):
            await store.record_revocation("corp", i, RevocationReason.SUPERSEDED,
                                          dt.datetime.now(dt.UTC))

asyncio.run(main())
"""


async def test_three_processes_write_one_database_without_losing_rows(
    postgres: PostgresCluster,
) -> None:
    import os
    import subprocess
    import sys

    url = postgres.new_database()
    text = ServerKey.generate_text()
    async with await PostgresStore.open(url, key=ServerKey.from_text(text, source=KEY_ENV)):
        pass  # the schema first, as the first replica's start makes it
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            PG_WRITER,
            str(base),
            stderr=subprocess.PIPE,
            env={**os.environ, "TEST_DATABASE_URL": url, KEY_ENV: text},
        )
        for base in (1, 1001, 2001)
    ]
    for proc in procs:
        _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        assert postgres.password not in err.decode()
    async with await PostgresStore.open(url, key=ServerKey.from_text(text, source=KEY_ENV)) as s:
        serials = [e.serial for e in await s.revocations("corp")]
    assert sorted(serials) == [*range(1, 101), *range(1001, 1101), *range(2001, 2101)]
    # Each writer's revocations keep their order in the one revocation sequence.
    for base in (1, 1001, 2001):
        assert [x for x in serials if base <= x < base + 100] == list(range(base, base + 100))


async def test_a_store_call_on_a_cut_network_fails_within_its_bound(
    postgres: PostgresCluster,
) -> None:
    """A network cut that swallows packets: the call fails after statement_seconds plus
    at most the retry window, not after psycopg's cancel-on-timeout waits 10 s more."""
    from tests.replicas.proxy import Proxy

    url = postgres.new_database()
    proxy = Proxy(postgres.port)
    through = url.replace(f":{postgres.port}/", f":{proxy.port}/")
    try:
        async with await PostgresStore.open(
            through, key=key(), statement_seconds=1, retry_seconds=1
        ) as store:
            assert (await store.status("corp", 1)).state == "unknown"
            proxy.cut()
            start = time.monotonic()
            # A config write whose answer was lost says its outcome is unknown ...
            with pytest.raises(StorageUnavailableError, match="outcome is unknown") as info:
                await store.put_issuer(record(), secret_fields=SECRET_FIELDS)
            assert info.value.hint is not None and "revision" in info.value.hint
            assert time.monotonic() - start < 3.0
            # ... a read says the database did not answer.
            start = time.monotonic()
            with pytest.raises(StorageUnavailableError, match="did not answer within 1 s"):
                await store.status("corp", 1)
            assert time.monotonic() - start < 3.0
            proxy.heal()
            deadline = time.monotonic() + 10
            while True:  # the cut connection was discarded: the store serves again
                try:
                    assert (await store.status("corp", 1)).state == "unknown"
                    break
                except StorageUnavailableError:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.1)
    finally:
        proxy.close()


async def test_a_wrong_password_is_reported_at_once_as_such(postgres: PostgresCluster) -> None:
    wrong = postgres.new_database().replace(postgres.password, "not-the-password-0123")
    start = time.monotonic()
    with pytest.raises(StorageUnavailableError) as info:
        await PostgresStore.open(wrong, key=key())
    assert time.monotonic() - start < 2.0  # not retried: it does not get right
    assert "password authentication failed" in info.value.message
    assert info.value.hint is not None and "password" in info.value.hint
    assert "not-the-password-0123" not in f"{info.value} {info.value!r}"


async def test_a_replica_waits_for_another_replicas_migration_beyond_the_call_bound(
    postgres: PostgresCluster,
) -> None:
    import psycopg

    from certctl_host.storage._postgres import _MIGRATION_LOCK

    url = postgres.new_database()
    with psycopg.connect(url) as other:  # another replica migrating for 2 s
        other.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        opening = asyncio.create_task(
            PostgresStore.open(url, key=key(), statement_seconds=0.5, retry_seconds=0.5)
        )
        await asyncio.sleep(2)
        assert not opening.done()
        other.commit()
        async with await opening as store:
            assert await store.config_revision() == 0
