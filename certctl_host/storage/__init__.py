"""Storage: issuer configurations (secrets sealed at rest) and the revocation ledger.

Public API (the server and the CLI open the same data directory)::

    async with await SQLiteStore.open(data_dir) as store:
        await store.put_issuer(IssuerRecord("corp", "stepca", config),
                               secret_fields=frozenset({"provisioner_password"}))
        await store.record_issued("corp", certificate)
        await store.record_revocation("corp", serial, RevocationReason.KEY_COMPROMISE, now)
        status = await store.status("corp", serial)        # CertificateStatus

:class:`Store` is the port; :class:`SQLiteStore` the embedded implementation (safe for
several processes on one data directory); ``certctl_host.storage._postgres.PostgresStore``
serves several replicas from one PostgreSQL database (ADR 0023; needs the ``postgres``
extra). :func:`open_store` opens the one a server's settings name.
"""

from __future__ import annotations

from certctl_host.storage._crypto import KEY_ENV, KEY_FILE, ServerKey
from certctl_host.storage._errors import (
    RevisionConflictError,
    ServerKeyError,
    StorageUnavailableError,
)
from certctl_host.storage._masking import MASK, mask_config, unmask_config
from certctl_host.storage._open import open_store
from certctl_host.storage._port import IssuerRecord, LedgerEntry, ProfileRecord, Store
from certctl_host.storage._sqlite import DB_FILE, SQLiteStore

__all__ = [
    "DB_FILE",
    "KEY_ENV",
    "KEY_FILE",
    "MASK",
    "IssuerRecord",
    "LedgerEntry",
    "ProfileRecord",
    "RevisionConflictError",
    "SQLiteStore",
    "ServerKey",
    "ServerKeyError",
    "Store",
    "StorageUnavailableError",
    "mask_config",
    "open_store",
    "unmask_config",
]
