"""``--data-dir``: the issuers and the ledger the reference server keeps.

With a data directory, an issuer command takes the issuer's settings from the server's
store (``PUT /api/v1/issuers/{id}`` put them there, secrets sealed with the server key)
and records what it does in the server's ledger, from which the server answers OCSP for
connectors that have no responder of their own (step-ca). The store is SQLite, safe for
the server and the CLI to use at the same time.

Invariant: every certificate the CLI hands out is in the ledger. A certificate is
recorded *before* its files are written; if recording fails, nothing is written. A
revocation is recorded after the CA accepted it; if recording fails, the command fails
and says to run it again (revocation is idempotent, and a repeat records it).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
from cryptography import x509

from certctl_core.domain import CertificateStatus, Revocation, format_serial_hex
from certctl_core.errors import CertctlError
from certctl_host.cli._exit import UsageError
from certctl_host.storage import DB_FILE, IssuerRecord, SQLiteStore

__all__ = ["DATA_DIR_ENV", "Ledger", "LedgerError", "open_ledger"]

DATA_DIR_ENV = "CERTCTL_DATA_DIR"


class LedgerError(CertctlError):
    """The CA did its part but the server's ledger could not record it (exit code 5)."""


async def open_ledger(data_dir: Path, env: Mapping[str, str] | None = None) -> Ledger:
    """Open an existing data directory; refuse to create one by mistake.

    Raises UsageError when ``data_dir`` holds no certctl store, ConfigError (ServerKeyError)
    when its server key is missing or wrong.
    """
    if not (data_dir / DB_FILE).is_file():
        raise UsageError(
            f"{str(data_dir)!r} is not a certctl data directory (no {DB_FILE})",
            hint="give the data_dir of 'certctl serve' (it creates it on first start), "
            f"via --data-dir or {DATA_DIR_ENV}",
        )
    store = await SQLiteStore.open(data_dir, env=os.environ if env is None else env)
    return Ledger(data_dir, store)


@attrs.define
class Ledger:
    """The server's store, as the CLI uses it."""

    data_dir: Path
    store: SQLiteStore

    async def issuer(self, issuer_id: str) -> IssuerRecord | None:
        return await self.store.get_issuer(issuer_id)

    async def record_issued(self, issuer_id: str, certificate: x509.Certificate) -> None:
        try:
            await self.store.record_issued(issuer_id, certificate)
        except CertctlError as exc:
            raise LedgerError(
                f"the CA issued serial 0x{format_serial_hex(certificate.serial_number)} but "
                f"the ledger in {self.data_dir} could not record it ({exc.message}); "
                "no file was written",
                issuer_id=issuer_id,
                hint="fix the data directory and issue again; the unrecorded certificate "
                "was never handed out",
            ) from exc

    async def record_revocation(self, issuer_id: str, revocation: Revocation) -> bool:
        """Record a revocation the CA accepted; True if the ledger did not have it yet."""
        when = revocation.revoked_at or dt.datetime.now(dt.UTC)
        try:
            _, newly = await self.store.record_revocation(
                issuer_id, revocation.serial, revocation.reason, when
            )
        except CertctlError as exc:
            raise LedgerError(
                f"the CA revoked serial 0x{format_serial_hex(revocation.serial)} but the "
                f"ledger in {self.data_dir} could not record it ({exc.message}); OCSP "
                "answers from that ledger",
                issuer_id=issuer_id,
                hint="run the same revoke again once the data directory is writable: it is "
                "idempotent and records the revocation",
            ) from exc
        return newly

    async def status(self, issuer_id: str, serial: int) -> CertificateStatus:
        return await self.store.status(issuer_id, serial)

    async def aclose(self) -> None:
        await self.store.aclose()

    def describe(self) -> dict[str, Any]:
        return {"data_dir": str(self.data_dir)}
