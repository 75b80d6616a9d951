"""Open the store a server's settings name: SQLite in the data directory (the embedded
default), or PostgreSQL when a database URL is given (several replicas, ADR 0023)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from certctl_core.errors import ConfigError, ConfigProblem
from certctl_host.storage._crypto import KEY_ENV, ServerKey
from certctl_host.storage._errors import ServerKeyError
from certctl_host.storage._port import Store
from certctl_host.storage._sqlite import SQLiteStore

__all__ = ["open_store"]


async def open_store(data_dir: Path, *, database_url: str | None, env: Mapping[str, str]) -> Store:
    """The SQLite store of ``data_dir``, or the PostgreSQL store at ``database_url``.

    With PostgreSQL the server key must come from ``CERTCTL_SERVER_KEY``: every replica
    needs the same key, and a key file beside one replica's data would not reach the
    others. Raises ConfigError (bad URL, driver not installed), ServerKeyError,
    StorageUnavailableError (the database cannot be reached)."""
    if database_url is None:
        return await SQLiteStore.open(data_dir, env=env)
    text = env.get(KEY_ENV)
    if not text:
        raise ServerKeyError(
            [
                ConfigProblem(
                    KEY_ENV,
                    "is required with a database URL: every replica must seal and open "
                    "secrets with the same server key",
                    "generate one with: certctl keygen, and give the same value to every replica",
                )
            ]
        )
    key = ServerKey.from_text(text, source=KEY_ENV)
    try:
        from certctl_host.storage._postgres import PostgresStore
    except ImportError:
        raise ConfigError(
            [
                ConfigProblem(
                    "database_url",
                    "PostgreSQL needs the psycopg driver, which is not installed",
                    "pip install 'certctl-connectors[postgres]'",
                )
            ]
        ) from None
    return await PostgresStore.open(database_url, key=key)
