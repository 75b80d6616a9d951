"""Server settings: parsed from a mapping plus the environment, every problem at once.

=========================  ========================  ===========================================
key                        environment               meaning (default)
=========================  ========================  ===========================================
``data_dir``               ``CERTCTL_DATA_DIR``      store, server key (``./certctl-data``)
``api_tokens``             ``CERTCTL_API_TOKENS``    bearer tokens, comma-separated in the env
``host``                   ``CERTCTL_HOST``          listen address (``127.0.0.1``)
``port``                   ``CERTCTL_PORT``          listen port (``8080``; 0 = any free one)
``max_body_bytes``         --                        largest API request body (1 MiB)
``max_ocsp_request_bytes`` --                        largest OCSP request (16 KiB, also the most)
``rate_limit_per_second``  --                        .well-known requests per client IP (50)
``rate_limit_burst``       --                        bucket size per client IP (100)
``drain_timeout_seconds``  --                        old connector drain on hot-swap (30)
``crl_max_age_seconds``    --                        cap on CRL Cache-Control max-age (3600)
``config_poll_seconds``    --                        pick up configs other processes wrote (2;
                                                     0 = never)
``log_level``              ``CERTCTL_LOG_LEVEL``     ``info``
``database_url``           ``CERTCTL_DATABASE_URL``  ``postgresql://...``: replicas share one
                                                     PostgreSQL (none: SQLite in data_dir)
``replica_id``             ``CERTCTL_REPLICA_ID``    this replica's name (host name and pid)
``replica_staleness_seconds``                        with PostgreSQL: refuse issuance when the
(no environment variable)                            store's revision was not confirmed for this
                                                     long (10)
=========================  ========================  ===========================================

Explicit settings win over the environment. Tokens must be at least 16 characters.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from certctl_core import ConfigReader, Secret
from certctl_core.revocation import MAX_OCSP_REQUEST_BYTES

__all__ = ["MIN_TOKEN_LENGTH", "ServerSettings"]

MIN_TOKEN_LENGTH = 16
_ENV = {
    "data_dir": "CERTCTL_DATA_DIR",
    "api_tokens": "CERTCTL_API_TOKENS",
    "host": "CERTCTL_HOST",
    "port": "CERTCTL_PORT",
    "log_level": "CERTCTL_LOG_LEVEL",
    "database_url": "CERTCTL_DATABASE_URL",
    "replica_id": "CERTCTL_REPLICA_ID",
}
#: key -> (default, lowest, highest)
_NUMBERS: dict[str, tuple[float, float, float]] = {
    "port": (8080, 0, 65535),
    "max_body_bytes": (1 << 20, 1024, 64 << 20),
    # parse_ocsp_request refuses anything larger, whatever this says.
    "max_ocsp_request_bytes": (16 << 10, 256, MAX_OCSP_REQUEST_BYTES),
    "rate_limit_per_second": (50.0, 0.01, 1e6),
    "rate_limit_burst": (100, 1, 1e7),
    "drain_timeout_seconds": (30.0, 0.0, 3600.0),
    "crl_max_age_seconds": (3600, 0, 7 * 86400),
    "config_poll_seconds": (2.0, 0.0, 3600.0),
    "replica_staleness_seconds": (10.0, 0.5, 3600.0),
}
_INTEGERS = {
    "port",
    "max_body_bytes",
    "max_ocsp_request_bytes",
    "rate_limit_burst",
    "crl_max_age_seconds",
}
_REPLICA_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_LEVELS = ("critical", "error", "warning", "info", "debug")
_KNOWN = frozenset({*_ENV, *_NUMBERS})  # database_url and replica_id are in _ENV


@attrs.frozen
class ServerSettings:
    """What the reference server needs to run. Build it with :meth:`from_mapping`."""

    data_dir: Path
    api_tokens: tuple[Secret, ...] = attrs.field(repr=False)
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 1 << 20
    max_ocsp_request_bytes: int = 16 << 10
    rate_limit_per_second: float = 50.0
    rate_limit_burst: int = 100
    drain_timeout_seconds: float = 30.0
    crl_max_age_seconds: int = 3600
    config_poll_seconds: float = 2.0
    log_level: str = "info"
    #: PostgreSQL connection URL (password included, so never shown); None: SQLite.
    database_url: Secret | None = attrs.field(default=None, repr=False)
    replica_id: str = attrs.field(factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    replica_staleness_seconds: float = 10.0
    #: Environment handed to connector factories and the store (server key), for tests.
    env: Mapping[str, str] | None = attrs.field(default=None, repr=False, eq=False)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], env: Mapping[str, str]) -> ServerSettings:
        """Validate ``raw`` (a parsed config file), filling gaps from ``env``.

        Raises ConfigError listing every problem.
        """
        read = ConfigReader(raw, env, known=_KNOWN)
        data_dir = read.path("data_dir", env=_ENV["data_dir"]) or Path("certctl-data")
        tokens = _tokens(read, raw.get("api_tokens"), env.get(_ENV["api_tokens"]))
        host = read.text("host", env=_ENV["host"]) or "127.0.0.1"
        numbers: dict[str, Any] = {
            key: read.number(
                key, low, high, default=default, integer=key in _INTEGERS, env=_ENV.get(key)
            )
            for key, (default, low, high) in _NUMBERS.items()
        }
        database_url = _database_url(read, raw.get("database_url"), env.get(_ENV["database_url"]))
        replica_id = read.text("replica_id", env=_ENV["replica_id"])
        if replica_id is not None and not _REPLICA_ID.fullmatch(replica_id):
            read.problem("replica_id", "must be 1-64 letters, digits, '.', '-', '_' or ':'")
        level = (read.text("log_level", env=_ENV["log_level"]) or "info").lower()
        if level not in _LEVELS:
            read.problem("log_level", f"must be one of {', '.join(_LEVELS)}")
        read.finish()
        more: dict[str, Any] = {"database_url": database_url}
        if replica_id is not None:
            more["replica_id"] = replica_id
        return cls(
            data_dir=data_dir,
            api_tokens=tokens,
            host=host,
            log_level=level,
            env=env,
            **numbers,
            **more,
        )


def _database_url(read: ConfigReader, configured: Any, from_env: str | None) -> Secret | None:
    """The PostgreSQL URL: a secret (it may hold the password), never echoed."""
    value = configured if configured is not None else from_env
    field = "database_url" if configured is not None else _ENV["database_url"]
    if value is None or value == "":
        return None
    text = value.reveal() if isinstance(value, Secret) else value
    if not isinstance(text, str) or not text.startswith(("postgresql://", "postgres://")):
        read.problem(
            field,
            "must be a PostgreSQL URL",
            "postgresql://user@host:5432/certctl (the password in the URL, or in "
            "PGPASSWORD / ~/.pgpass)",
        )
        return None
    return Secret(text)


def _tokens(read: ConfigReader, configured: Any, from_env: str | None) -> tuple[Secret, ...]:
    field = "api_tokens"
    values: list[Any]
    if configured is not None:
        values = [configured] if isinstance(configured, str | Secret) else configured
        if not isinstance(values, list | tuple):
            read.problem(field, "must be a list of strings")
            return ()
    elif from_env:
        field = _ENV["api_tokens"]
        values = [part.strip() for part in from_env.split(",") if part.strip()]
    else:
        read.problem(
            "api_tokens",
            "no API token is configured; the issuer API would be open to anyone",
            f"set api_tokens or {_ENV['api_tokens']} (comma-separated); make one with "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'",
        )
        return ()
    tokens: list[Secret] = []
    for index, value in enumerate(values):
        text = value.reveal() if isinstance(value, Secret) else value
        if not isinstance(text, str) or len(text) < MIN_TOKEN_LENGTH or "," in text:
            # Never echo the token itself: it is a secret even when too short.
            read.problem(
                f"{field}[{index}]",
                f"must be a string of at least {MIN_TOKEN_LENGTH} characters without commas",
            )
            continue
        tokens.append(Secret(text))
    if not tokens and not read.problems:
        read.problem(field, "is empty")
    return tuple(tokens)
