"""The storage port's tests run against both adapters: SQLite (embedded) and PostgreSQL
(a fresh database per test in the session's real cluster)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg
import pytest

from certctl_host.storage import DB_FILE, KEY_ENV, ServerKey, SQLiteStore
from certctl_host.storage._postgres import PostgresStore
from tests.postgres import PostgresCluster


class Backend:
    """Opens one store (a data directory, or a database) of either adapter again and
    again, and reaches its raw rows the way a person with database access would."""

    def __init__(self, name: str, tmp_path: Path, url: str | None) -> None:
        self.name = name
        self.tmp_path = tmp_path
        self.url = url
        self.key_text = ServerKey.generate_text()

    async def open(
        self, *, key_text: str | None = None, **kwargs: Any
    ) -> SQLiteStore | PostgresStore:
        env = {KEY_ENV: key_text or self.key_text}
        if self.url is None:
            return await SQLiteStore.open(self.tmp_path, env=env, **kwargs)
        key = ServerKey.from_text(env[KEY_ENV], source=KEY_ENV)
        return await PostgresStore.open(self.url, key=key, **kwargs)

    def execute(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run SQL on the raw database (``?`` placeholders for both)."""
        if self.url is None:
            import sqlite3

            with sqlite3.connect(self.tmp_path / DB_FILE) as conn:
                return conn.execute(query, params).fetchall()
        with psycopg.connect(self.url, autocommit=True) as pg:
            cursor = pg.execute(query.replace("?", "%s"), params)
            return cursor.fetchall() if cursor.description else []

    def raw_text(self) -> str:
        """Everything stored about issuers and profiles, as text."""
        rows = self.execute("SELECT * FROM issuers") + self.execute("SELECT * FROM meta")
        return repr(rows)

    def env(self) -> Mapping[str, str]:
        return {KEY_ENV: self.key_text}


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", tmp_path, None)
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return Backend("postgres", tmp_path, cluster.new_database())
