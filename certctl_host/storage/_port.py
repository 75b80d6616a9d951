"""The storage port: issuer configurations, certificate profiles and the revocation ledger.

The server, the CLI and the OCSP responder talk to storage only through :class:`Store`.
Every method is a coroutine and never blocks the event loop. The embedded implementation
is :class:`~certctl_host.storage.SQLiteStore`; a PostgreSQL one can serve several server
replicas (ADR 0012): every operation is one short transaction, issuer writes are guarded
by a revision (optimistic concurrency), and :meth:`Store.config_revision` lets a replica
notice another's changes by polling one number.

Configs handed to :meth:`Store.put_issuer` and returned by the readers are plain
(secrets revealed); the store seals the fields named in ``secret_fields`` at rest.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import attrs
from cryptography import x509

from certctl_core.domain import CertificateStatus, RevocationReason

__all__ = ["IssuerRecord", "LedgerEntry", "ProfileRecord", "Store"]


@attrs.frozen
class IssuerRecord:
    """One stored issuer: connector type, config, and the optional OCSP responder config
    (a partial config merged over ``config`` to build the responder's own connector)."""

    issuer_id: str
    type_name: str
    config: Mapping[str, Any] = attrs.field(repr=False)
    ocsp_responder: Mapping[str, Any] | None = attrs.field(default=None, repr=False)
    #: Store-wide revision of the last write of this record (0: never stored).
    revision: int = 0
    updated_at: dt.datetime | None = None
    #: Set when the stored row could not be decoded (a secret that does not decrypt with
    #: this server key): ``config`` and ``ocsp_responder`` then hold only the fields that
    #: were not sealed, and the issuer must not be built from them.
    error: str | None = None


@attrs.frozen
class ProfileRecord:
    """One stored certificate profile: its name and its JSON document (the server
    validates the document; the store keeps it as given, nothing in it is secret)."""

    name: str
    doc: Mapping[str, Any]
    #: Store-wide revision of the last write of this profile (shared with issuers).
    revision: int = 0
    updated_at: dt.datetime | None = None


@attrs.frozen
class LedgerEntry:
    """What the ledger knows of one serial of one issuer."""

    issuer_id: str
    serial: int
    not_after: dt.datetime | None
    revoked_at: dt.datetime | None = None
    reason: RevocationReason | None = None
    subject: str | None = None

    def status(self) -> CertificateStatus:
        if self.revoked_at is None:
            return CertificateStatus(self.serial, "good")
        return CertificateStatus(self.serial, "revoked", self.revoked_at, self.reason)


class Store(Protocol):
    """Issuer configs and the ledger of issued and revoked certificates, per issuer."""

    async def list_issuers(self) -> list[IssuerRecord]:
        """Every stored issuer, by id. A row that does not decode is returned with
        ``error`` set (one bad row never hides the others)."""
        ...

    async def get_issuer(self, issuer_id: str) -> IssuerRecord | None:
        """One issuer, or None; ``error`` is set if its secrets do not decrypt."""
        ...

    async def put_issuer(
        self,
        record: IssuerRecord,
        *,
        secret_fields: frozenset[str] = frozenset(),
        expected_revision: int | None = None,
    ) -> IssuerRecord:
        """Create or replace an issuer; returns it with its new revision.

        ``expected_revision`` (0 = must not exist yet) guards against lost updates:
        a mismatch raises RevisionConflictError and writes nothing.
        """
        ...

    async def delete_issuer(self, issuer_id: str) -> bool:
        """Remove an issuer's config (its ledger stays). False if there was none."""
        ...

    async def config_revision(self) -> int:
        """The highest revision written so far (grows with every issuer write)."""
        ...

    async def profiles(self) -> list[ProfileRecord]:
        """Every stored profile, by name."""
        ...

    async def profile(self, name: str) -> ProfileRecord | None:
        """One profile, or None."""
        ...

    async def put_profile(
        self, name: str, doc: Mapping[str, Any], expected_revision: int | None = None
    ) -> ProfileRecord:
        """Create or replace a profile; returns it with its new revision (store-wide, as
        for issuers). ``expected_revision`` (0 = must not exist yet) guards against lost
        updates: a mismatch raises RevisionConflictError and writes nothing."""
        ...

    async def delete_profile(self, name: str) -> bool:
        """Remove a profile. False if there was none."""
        ...

    async def record_issued(self, issuer_id: str, certificate: x509.Certificate) -> None:
        """Record a certificate the issuer issued (idempotent per serial)."""
        ...

    async def record_revocation(
        self,
        issuer_id: str,
        serial: int,
        reason: RevocationReason,
        revoked_at: dt.datetime,
    ) -> tuple[LedgerEntry, bool]:
        """Mark a serial revoked; returns the entry and whether it is newly revoked
        (a second revocation keeps the first time and reason). A serial the ledger never
        saw issued is recorded too: the CA revoked it, so it is revoked."""
        ...

    async def status(self, issuer_id: str, serial: int) -> CertificateStatus:
        """good (issued, not revoked), revoked, or unknown (never seen)."""
        ...

    async def revocations(self, issuer_id: str) -> Sequence[LedgerEntry]:
        """Every revoked serial of the issuer, in revocation order."""
        ...

    async def aclose(self) -> None:
        """Release connections and threads. Idempotent."""
        ...
