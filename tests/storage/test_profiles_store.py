"""Stored certificate profiles: CRUD with revisions, and the schema migration that adds
their table to a data directory written by the previous certctl (schema version 1)."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from certctl_core import RevocationReason
from certctl_host.storage import (
    DB_FILE,
    IssuerRecord,
    RevisionConflictError,
    ServerKeyError,
    SQLiteStore,
)
from tests.storage.conftest import Backend
from tests.storage.test_sqlite_store import certificate

pytestmark = pytest.mark.anyio

WEB = {"max_ttl_seconds": 3600, "key_types": ["ec-p256"], "ekus": ["serverAuth"]}

#: The schema of certctl before profiles (schema version 1), frozen here: what a data
#: directory of that release holds, whatever the current code's base schema becomes.
V1_TABLES = {"meta", "issuers", "certificates"}


def _tables(data_dir: Path) -> set[str]:
    with sqlite3.connect(data_dir / DB_FILE) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows}


def _schema_version(data_dir: Path) -> str:
    with sqlite3.connect(data_dir / DB_FILE) as conn:
        (value,) = conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
    return str(value)


async def test_profile_round_trips_with_store_wide_revisions(backend: Backend) -> None:
    async with await backend.open() as store:
        assert await store.profiles() == []
        assert await store.profile("web") is None
        issuer = await store.put_issuer(IssuerRecord("corp", "stepca", {"ca_url": "x"}))
        saved = await store.put_profile("web", WEB, expected_revision=0)
        assert saved.revision == issuer.revision + 1  # one counter for every config write
        assert await store.config_revision() == saved.revision
        loaded = await store.profile("web")
        assert loaded is not None
        assert loaded.doc == WEB
        assert loaded.revision == saved.revision
        assert loaded.updated_at is not None
        await store.put_profile("api", {"max_ttl_seconds": 60})
        assert [p.name for p in await store.profiles()] == ["api", "web"]


async def test_profile_put_refuses_when_revision_is_stale(backend: Backend) -> None:
    async with await backend.open() as store:
        first = await store.put_profile("web", WEB, expected_revision=0)
        with pytest.raises(RevisionConflictError) as info:
            await store.put_profile("web", {"max_ttl_seconds": 60}, expected_revision=0)
        assert info.value.message == (
            f"profile 'web' is at revision {first.revision}, not the expected 0"
        )
        assert info.value.issuer_id is None
        unchanged = await store.profile("web")
        assert unchanged is not None and unchanged.doc == WEB
        second = await store.put_profile("web", {"max_ttl_seconds": 60}, first.revision)
        assert second.revision > first.revision
        assert await store.delete_profile("web")
        assert await store.profile("web") is None
        assert not await store.delete_profile("web")
        assert await store.config_revision() > second.revision


async def test_data_dir_of_schema_1_is_migrated_and_keeps_its_data(tmp_path: Path) -> None:
    # A data directory as the previous release left it: its tables, schema_version 1.
    async with await SQLiteStore.open(tmp_path, env={}) as store:
        await store.put_issuer(
            IssuerRecord("corp", "stepca", {"ca_url": "x", "pw": "s3cret"}),
            secret_fields=frozenset({"pw"}),
        )
        await store.record_issued("corp", certificate(0x1234))
        await store.record_revocation(
            "corp", 0x1234, RevocationReason.KEY_COMPROMISE, dt.datetime.now(dt.UTC)
        )
    with sqlite3.connect(tmp_path / DB_FILE) as conn:
        conn.execute("DROP TABLE profiles")
        conn.execute("UPDATE meta SET value = '1' WHERE name = 'schema_version'")
    assert _tables(tmp_path) == V1_TABLES
    assert _schema_version(tmp_path) == "1"

    async with await SQLiteStore.open(tmp_path, env={}) as store:
        issuer = await store.get_issuer("corp")
        assert issuer is not None and issuer.config["pw"] == "s3cret"
        assert (await store.status("corp", 0x1234)).state == "revoked"
        assert await store.profiles() == []
        saved = await store.put_profile("web", WEB, expected_revision=0)
        assert saved.revision > issuer.revision
    assert _tables(tmp_path) == V1_TABLES | {"profiles"}
    assert _schema_version(tmp_path) == "2"
    # Opening again is a no-op: the profile stays.
    async with await SQLiteStore.open(tmp_path, env={}) as store:
        again = await store.profile("web")
        assert again is not None and again.doc == WEB


async def test_data_dir_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    async with await SQLiteStore.open(tmp_path, env={}):
        pass
    with sqlite3.connect(tmp_path / DB_FILE) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE name = 'schema_version'")
    with pytest.raises(ServerKeyError, match="newer certctl"):
        await SQLiteStore.open(tmp_path, env={})
