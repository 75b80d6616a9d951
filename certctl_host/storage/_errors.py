"""Errors of the storage port, as branches of the certctl error tree."""

from __future__ import annotations

from certctl_core.errors import CertctlError, ConfigError, TransientError

__all__ = ["RevisionConflictError", "ServerKeyError", "StorageUnavailableError"]


class StorageUnavailableError(TransientError):
    """The store could not be read or written now (locked, disk full, I/O error)."""


class RevisionConflictError(CertctlError):
    """A write expected another revision of the issuer config (or of the profile, with
    ``kind="profile"``) than the stored one: someone else changed it meanwhile. Read it
    again and retry."""

    def __init__(
        self,
        issuer_id: str,
        expected: int | None,
        actual: int | None,
        *,
        kind: str = "issuer",
    ) -> None:
        super().__init__(
            f"{kind} {issuer_id!r} is at revision {actual}, not the expected {expected}",
            issuer_id=issuer_id if kind == "issuer" else None,
            hint=f"another writer changed this {kind}; read it again and retry",
        )
        self.expected = expected
        self.actual = actual
        self.kind = kind


class ServerKeyError(ConfigError):
    """The server key is missing, malformed, or not the key this data directory was made with."""
