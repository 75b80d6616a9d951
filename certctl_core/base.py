"""A base class that gives a connector the parts of the contract every adapter shares.

Subclassing :class:`IssuerBase` is optional (the port is a Protocol), but it gets the
fiddly rules right: ``close()`` is idempotent, calls after it raise IssuerClosedError,
undeclared optional operations raise UnsupportedCapabilityError, and errors name the
connector and issuer id.
"""

from __future__ import annotations

from typing import ClassVar

from certctl_core.domain import Capabilities, CertificateStatus
from certctl_core.errors import IssuerClosedError, UnsupportedCapabilityError, Where

__all__ = ["IssuerBase"]


class IssuerBase:
    """Shared behaviour for connectors; subclasses set ``connector_name``."""

    connector_name: ClassVar[str] = "connector"

    def __init__(self, issuer_id: str) -> None:
        self._issuer_id = issuer_id
        self._closed = False

    @property
    def issuer_id(self) -> str:
        return self._issuer_id

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities()

    @property
    def closed(self) -> bool:
        return self._closed

    def _where(self) -> Where:
        """Keyword arguments naming this connector, for CertctlError constructors."""
        return {"issuer_id": self._issuer_id, "connector": self.connector_name}

    def _ensure_open(self) -> None:
        if self._closed:
            raise IssuerClosedError(
                "this connector was closed",
                hint="the registry replaced or removed it; call through the registry",
                **self._where(),
            )

    def _unsupported(self, capability: str) -> UnsupportedCapabilityError:
        return UnsupportedCapabilityError(capability, **self._where())

    async def crl(self) -> bytes:
        self._ensure_open()
        raise self._unsupported("crl")

    async def ocsp(self, request_der: bytes) -> bytes:
        self._ensure_open()
        raise self._unsupported("ocsp")

    async def status(self, serial: int) -> CertificateStatus:
        self._ensure_open()
        raise self._unsupported("status")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._release()

    async def _release(self) -> None:
        """Release resources; called once, by the first close()."""
