"""The SQLite store: configs with sealed secrets, revisions, the ledger, two processes."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certctl_core import RevocationReason
from certctl_host.storage import (
    DB_FILE,
    KEY_ENV,
    KEY_FILE,
    IssuerRecord,
    RevisionConflictError,
    ServerKey,
    ServerKeyError,
    SQLiteStore,
    StorageUnavailableError,
)
from tests.storage.conftest import Backend

pytestmark = pytest.mark.anyio

SECRET = "p4ssw0rd-that-must-never-be-stored-in-clear"
SECRET_FIELDS = frozenset({"provisioner_password"})


def record(issuer_id: str = "corp", **config: object) -> IssuerRecord:
    return IssuerRecord(
        issuer_id,
        "stepca",
        {"ca_url": "https://ca.test", "provisioner_password": SECRET, **config},
        {"provisioner_name": "ocsp-responder", "provisioner_password": SECRET},
    )


def certificate(serial: int) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf.test")])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def all_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in data_dir.iterdir() if p.is_file())


async def test_config_round_trips_and_secrets_are_sealed_when_stored(tmp_path: Path) -> None:
    async with await SQLiteStore.open(tmp_path, env={}) as store:
        saved = await store.put_issuer(record(), secret_fields=SECRET_FIELDS)
        loaded = await store.get_issuer("corp")
    assert loaded is not None
    assert loaded.config["provisioner_password"] == SECRET
    assert loaded.ocsp_responder == {
        "provisioner_name": "ocsp-responder",
        "provisioner_password": SECRET,
    }
    assert loaded.revision == saved.revision == 1
    raw = all_bytes(tmp_path)
    assert SECRET.encode() not in raw
    assert b"https://ca.test" in raw  # non-secret fields stay readable
    assert (tmp_path / KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert (tmp_path / DB_FILE).stat().st_mode & 0o777 == 0o600
    assert SECRET not in repr(loaded)


async def test_secrets_are_sealed_in_either_store(backend: Backend) -> None:
    async with await backend.open() as store:
        saved = await store.put_issuer(record(), secret_fields=SECRET_FIELDS)
        loaded = await store.get_issuer("corp")
        assert loaded is not None and loaded.config["provisioner_password"] == SECRET
        assert loaded.revision == saved.revision == 1
        assert await store.config_revision() == 1
        assert SECRET not in repr(store) and SECRET not in repr(loaded)
    raw = backend.raw_text()
    assert SECRET not in raw
    assert "https://ca.test" in raw  # non-secret fields stay readable


async def test_open_refuses_when_server_key_is_another(backend: Backend) -> None:
    async with await backend.open() as store:
        await store.put_issuer(record(), secret_fields=SECRET_FIELDS)
    other = ServerKey.generate_text()
    with pytest.raises(ServerKeyError) as info:
        await backend.open(key_text=other)
    assert "server key" in str(info.value)
    assert other not in str(info.value)


async def test_env_key_wins_and_is_validated(tmp_path: Path) -> None:
    key = ServerKey.generate_text()
    async with await SQLiteStore.open(tmp_path, env={KEY_ENV: key}) as store:
        await store.put_issuer(record(), secret_fields=SECRET_FIELDS)
    assert not (tmp_path / KEY_FILE).exists()
    async with await SQLiteStore.open(tmp_path, env={KEY_ENV: key}) as store:
        loaded = await store.get_issuer("corp")
    assert loaded is not None and loaded.config["provisioner_password"] == SECRET
    with pytest.raises(ServerKeyError, match="32"):
        await SQLiteStore.open(tmp_path / "x", env={KEY_ENV: "c2hvcnQ"})


async def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    async with await SQLiteStore.open(tmp_path, env={}):
        pass
    os.chmod(tmp_path / KEY_FILE, 0o644)
    with pytest.raises(ServerKeyError, match="chmod 600"):
        await SQLiteStore.open(tmp_path, env={})


async def test_sealed_value_moved_to_another_issuer_does_not_decrypt(backend: Backend) -> None:
    async with await backend.open() as store:
        await store.put_issuer(record("a"), secret_fields=SECRET_FIELDS)
        await store.put_issuer(record("b"), secret_fields=SECRET_FIELDS)
    ((config_a,),) = backend.execute("SELECT config FROM issuers WHERE issuer_id='a'")
    backend.execute("UPDATE issuers SET config = ? WHERE issuer_id = 'b'", (config_a,))
    async with await backend.open() as store:
        good = await store.get_issuer("a")
        assert good is not None and good.error is None
        bad = await store.get_issuer("b")
        assert bad is not None and bad.error is not None
        assert "does not decrypt" in bad.error
        # Only what was not sealed is kept; the secret is neither there nor in the error.
        assert bad.config == {"ca_url": "https://ca.test"}
        assert SECRET not in bad.error


async def test_one_row_that_does_not_decrypt_does_not_hide_the_others(backend: Backend) -> None:
    async with await backend.open() as store:
        for name in ("a", "b", "c"):
            await store.put_issuer(record(name), secret_fields=SECRET_FIELDS)
    ((config_c,),) = backend.execute("SELECT config FROM issuers WHERE issuer_id='c'")
    backend.execute("UPDATE issuers SET config = ? WHERE issuer_id = 'a'", (config_c,))
    backend.execute("UPDATE issuers SET config = 'not json' WHERE issuer_id = 'b'")
    async with await backend.open() as store:
        listed = await store.list_issuers()
    assert [(r.issuer_id, r.error is None) for r in listed] == [
        ("a", False),
        ("b", False),
        ("c", True),
    ]
    assert listed[2].config["provisioner_password"] == SECRET


async def test_connection_leaves_the_transaction_when_commit_fails(tmp_path: Path) -> None:
    """A deferred foreign key fails at COMMIT (a real SQLite fault); the thread's
    connection must be usable for the next write."""
    import sqlite3

    async with await SQLiteStore.open(tmp_path, env={}, workers=1) as store:

        def setup() -> None:
            conn = store._conn()
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("CREATE TEMP TABLE parent (id INTEGER PRIMARY KEY)")
            conn.execute(
                "CREATE TEMP TABLE child (parent INTEGER REFERENCES parent (id) "
                "DEFERRABLE INITIALLY DEFERRED)"
            )

        def orphan() -> None:
            with store._write() as conn:
                conn.execute("INSERT INTO child VALUES (1)")

        await store._run(setup)
        with pytest.raises(StorageUnavailableError) as info:
            await store._run(orphan)
        assert isinstance(info.value.__cause__, sqlite3.IntegrityError)
        saved = await store.put_issuer(record(), secret_fields=SECRET_FIELDS)
        assert saved.revision == 1
        assert (await store.get_issuer("corp")) is not None


def test_server_key_that_cannot_be_created_is_a_server_key_error(tmp_path: Path) -> None:
    missing = tmp_path / "removed-meanwhile"
    with pytest.raises(ServerKeyError) as info:
        ServerKey.load_or_create(missing, {})
    assert "cannot be created" in str(info.value)
    assert "must be able to write" in str(info.value)


async def test_put_refuses_when_revision_is_stale(backend: Backend) -> None:
    async with await backend.open() as store:
        first = await store.put_issuer(record(), expected_revision=0)
        with pytest.raises(RevisionConflictError):
            await store.put_issuer(record(timeout_seconds=3), expected_revision=0)
        second = await store.put_issuer(record(timeout_seconds=3), expected_revision=first.revision)
        assert second.revision > first.revision
        assert await store.config_revision() == second.revision
        loaded = await store.get_issuer("corp")
        assert loaded is not None and loaded.config["timeout_seconds"] == 3
        assert await store.delete_issuer("corp")
        assert await store.get_issuer("corp") is None
        assert not await store.delete_issuer("corp")


async def test_ledger_states_good_revoked_unknown(backend: Backend) -> None:
    async with await backend.open() as store:
        await store.record_issued("corp", certificate(0x1234))
        await store.record_issued("corp", certificate(0x5678))
        when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
        entry, newly = await store.record_revocation(
            "corp", 0x5678, RevocationReason.KEY_COMPROMISE, when
        )
        assert newly and entry.revoked_at == when
        again, newly = await store.record_revocation(
            "corp", 0x5678, RevocationReason.SUPERSEDED, when + dt.timedelta(hours=1)
        )
        assert not newly and again.reason is RevocationReason.KEY_COMPROMISE
        assert again.revoked_at == when
        assert (await store.status("corp", 0x1234)).state == "good"
        revoked = await store.status("corp", 0x5678)
        assert (revoked.state, revoked.reason, revoked.revoked_at) == (
            "revoked",
            RevocationReason.KEY_COMPROMISE,
            when,
        )
        assert (await store.status("corp", 0x9999)).state == "unknown"
        # Ledgers are per issuer: the same serial at another issuer is unknown.
        assert (await store.status("other", 0x1234)).state == "unknown"
        # A serial never seen issued but revoked by the CA is revoked.
        await store.record_revocation("corp", 0xABCD, RevocationReason.UNSPECIFIED, when)
        assert (await store.status("corp", 0xABCD)).state == "revoked"
        assert [e.serial for e in await store.revocations("corp")] == [0x5678, 0xABCD]


async def test_operations_after_close_raise_transient_error(backend: Backend) -> None:
    from certctl_core import TransientError

    store = await backend.open()
    await store.aclose()
    await store.aclose()
    with pytest.raises(TransientError):
        await store.status("corp", 1)


WRITER = """
import asyncio, datetime as dt, sys
from certctl_core import RevocationReason
from certctl_host.storage import SQLiteStore

async def main():
    async with await SQLiteStore.open(sys.argv[1]) as store:
        base = int(sys.argv[2])
        for i in range(base, base + 100):
            await store.record_revocation("corp", i, RevocationReason.SUPERSEDED,
                                          dt.datetime.now(dt.UTC))

asyncio.run(main())
"""


async def test_two_processes_write_one_data_dir_without_losing_rows(tmp_path: Path) -> None:
    async with await SQLiteStore.open(tmp_path, env={}):
        pass  # create the key first, as the server does on its first start
    env = {k: v for k, v in os.environ.items() if k != KEY_ENV}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WRITER,
            str(tmp_path),
            str(base),
            env=env,
            stderr=subprocess.PIPE,
        )
        for base in (1, 1001)
    ]
    async with await SQLiteStore.open(tmp_path, env={}) as store:
        for i in range(2001, 2101):
            await store.record_revocation(
                "corp", i, RevocationReason.SUPERSEDED, dt.datetime.now(dt.UTC)
            )
        for proc in procs:
            _, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
        serials = {e.serial for e in await store.revocations("corp")}
    assert serials == set(range(1, 101)) | set(range(1001, 1101)) | set(range(2001, 2101))
