"""Sealing and reading stored issuer configs: one copy for every store adapter.

A config is stored as JSON with the fields its connector type declares secret sealed
(``{"$encrypted": ...}``, associated data = issuer id, part and field, ADR 0012). A row
whose sealed value does not decrypt is returned with ``error`` set and only its unsealed
fields: one bad row is that issuer's error, not the store's.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping
from typing import Any

from certctl_core import ConfigProblem
from certctl_host.storage._crypto import ServerKey, is_sealed
from certctl_host.storage._errors import ServerKeyError
from certctl_host.storage._port import IssuerRecord

__all__ = [
    "KEY_CHECK",
    "check_schema_version",
    "decode_record",
    "key_check_value",
    "seal_config",
    "verify_key_check",
]

log = logging.getLogger("certctl_host.storage")

#: The value sealed in ``meta.key_check``: a wrong server key is refused at open.
KEY_CHECK = "certctl-server-key-check"


def key_check_value(key: ServerKey) -> str:
    """What a new store keeps in ``meta.key_check``: :data:`KEY_CHECK` sealed with ``key``."""
    return json.dumps(key.seal(KEY_CHECK, "meta.key_check"))


def verify_key_check(key: ServerKey, stored: str) -> None:
    """Refuse a server key that is not the one the store was made with."""
    if key.open(json.loads(stored), "meta.key_check") != KEY_CHECK:
        raise ServerKeyError([ConfigProblem("server key", "check value differs")])


def check_schema_version(version: int, supported: int, field: str, subject: str = "") -> None:
    """Refuse a store whose schema a newer certctl wrote (``subject``, e.g. "the database
    ", starts the message; the field names the store already)."""
    if version > supported:
        raise ServerKeyError(
            [
                ConfigProblem(
                    field,
                    f"{subject}was written by a newer certctl (schema {version})",
                    "upgrade certctl",
                )
            ]
        )


def _context(issuer_id: str, part: str, field: str) -> str:
    return f"certctl issuer {issuer_id} {part}.{field}"


def seal_config(
    key: ServerKey, issuer_id: str, part: str, config: Mapping[str, Any], secret: frozenset[str]
) -> str:
    """The JSON text stored for ``config`` (``part``: config or ocsp_responder)."""
    stored = {
        name: (
            key.seal(value, _context(issuer_id, part, name))
            if name in secret and value is not None
            else value
        )
        for name, value in config.items()
    }
    return json.dumps(stored, sort_keys=True)


def _unseal(key: ServerKey, issuer_id: str, part: str, text: str) -> dict[str, Any]:
    stored = json.loads(text)
    return {
        name: (key.open(value, _context(issuer_id, part, name)) if is_sealed(value) else value)
        for name, value in stored.items()
    }


def _plain_fields(text: str) -> dict[str, Any]:
    """The fields of a stored config that are not sealed (for a row that does not decode)."""
    try:
        stored = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(stored, dict):
        return {}
    return {name: value for name, value in stored.items() if not is_sealed(value)}


def decode_record(
    key: ServerKey,
    issuer_id: str,
    type_name: str,
    config: str,
    responder: str | None,
    revision: int,
    updated_at: dt.datetime | None,
) -> IssuerRecord:
    """The record of one stored row; ``error`` set when it does not decode."""
    try:
        return IssuerRecord(
            issuer_id=issuer_id,
            type_name=type_name,
            config=_unseal(key, issuer_id, "config", config),
            ocsp_responder=(
                None if responder is None else _unseal(key, issuer_id, "ocsp_responder", responder)
            ),
            revision=int(revision),
            updated_at=updated_at,
        )
    except (ServerKeyError, ValueError, TypeError, AttributeError) as exc:
        message = (
            "a sealed secret does not decrypt with this server key (it was sealed with "
            "another key, or for another issuer); PUT the issuer again with its secrets, "
            "or start with the key it was sealed with"
            if isinstance(exc, ServerKeyError)
            else "it is not a JSON object of settings"
        )
        log.error("issuer %s: the stored config cannot be read: %s", issuer_id, message)  # noqa: TRY400
        return IssuerRecord(
            issuer_id=issuer_id,
            type_name=type_name,
            config=_plain_fields(config),
            ocsp_responder=None if responder is None else _plain_fields(responder),
            revision=int(revision),
            updated_at=updated_at,
            error=f"the stored config cannot be read: {message}",
        )
