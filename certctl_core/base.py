"""A base class that gives a connector the parts of the contract every adapter shares.

Subclassing :class:`IssuerBase` is optional (the port is a Protocol), but it gets the
fiddly rules right: ``close()`` is idempotent, calls after it raise IssuerClosedError,
and undeclared optional operations raise UnsupportedCapabilityError.

What a subclass uses or overrides, all public:

* :meth:`ensure_open` at the start of every operation;
* :meth:`unsupported` to build the error for an optional operation it does not offer;
* :meth:`release`, overridden to release connections, files and tasks; ``close()``
  calls it once.

Errors need not name the issuer or connector: the registry fills both in.
"""

from __future__ import annotations

from typing import ClassVar

from cryptography import x509

from certctl_core.domain import Capabilities, CertificateStatus, RenewalWindow
from certctl_core.errors import IssuerClosedError, UnsupportedCapabilityError

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

    def ensure_open(self) -> None:
        """Raise IssuerClosedError if :meth:`close` was called."""
        if self._closed:
            raise IssuerClosedError(
                "this connector was closed",
                hint="the registry replaced or removed it; call through the registry",
                issuer_id=self._issuer_id,
                connector=self.connector_name,
            )

    def unsupported(self, capability: str) -> UnsupportedCapabilityError:
        """The error an undeclared optional operation (``crl``, ``ocsp``, ...) raises."""
        return UnsupportedCapabilityError(
            capability, issuer_id=self._issuer_id, connector=self.connector_name
        )

    async def crl(self) -> bytes:
        self.ensure_open()
        raise self.unsupported("crl")

    async def ocsp(self, request_der: bytes) -> bytes:
        self.ensure_open()
        raise self.unsupported("ocsp")

    async def status(self, serial: int) -> CertificateStatus:
        self.ensure_open()
        raise self.unsupported("status")

    async def renewal_info(self, certificate: x509.Certificate) -> RenewalWindow:
        self.ensure_open()
        raise self.unsupported("renewal_info")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.release()

    async def release(self) -> None:
        """Release resources; called once, by the first close()."""
