"""What an adapter hands the contract suite: a live issuer and how to check its work.

A *harness factory* is a callable taking a temporary directory and returning an async
context manager that yields a :class:`LiveIssuer` and, on exit, stops whatever it
started (a CA process, a state directory's users, connectors made by ``rebuild``).
Plugins register harness factories through the ``certctl_register_harnesses`` hook;
connector authors may instead override the ``live_issuer`` fixture of
:class:`certctl_contracts.IssuerContract` directly.

Everything the suite checks an adapter against comes from the harness, read from the
CA's own state, never from the adapter: the root, revocations (``is_revoked``), faults
the harness makes the CA suffer (``faults``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Protocol

import attrs
from cryptography import x509

from certctl_core.domain import RevocationReason
from certctl_core.ports import ConnectorType, IssuerPort

__all__ = ["CAFaults", "HarnessFactory", "LiveIssuer", "SERVER_AND_CLIENT"]

#: The EKUs of a TLS leaf usable by servers and clients, the usual default profile.
SERVER_AND_CLIENT: frozenset[x509.ObjectIdentifier] = frozenset(
    {x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH}
)


class CAFaults(Protocol):
    """Faults a harness can make its CA suffer, each for the duration of an ``async with``.

    The fault must be real for the connector: on the path production takes (a proxy in
    front of the CA, a locked database, an unwritable state directory), not a flag the
    connector reads. On exit the CA works again.
    """

    def unreachable(self) -> AbstractAsyncContextManager[None]:
        """The CA cannot be reached: connections refused or reset, storage gone."""
        ...

    def slow(self, seconds: float) -> AbstractAsyncContextManager[None]:
        """Every call to the CA takes ``seconds`` longer, then works."""
        ...

    def erroring(self) -> AbstractAsyncContextManager[None]:
        """The CA answers with a temporary failure (HTTP 503 with Retry-After, a locked
        database): a connector must report a TransientError with ``retry_after``."""
        ...


@attrs.frozen
class LiveIssuer:
    """A connector under test, connected to a live CA, and what the harness knows of it.

    Required:

    ``issuer``: the connector, built by ``connector_type.factory`` from ``config``.
    ``root``: the CA's root, read from the CA's own state (its files, its database,
    its process), never from the connector (not ``ca_chain()[-1]``).
    ``connector_type``: the :class:`~certctl_core.ConnectorType` the plugin registers;
    the suite checks the built connector against it.
    ``config``: the settings the factory was given (checked against ``secret_fields``).
    ``is_revoked``: async side channel, ``is_revoked(serial)`` is the reason the CA
    recorded for ``serial`` or None when the CA holds no revocation of it.
    ``rebuild``: async callable building a second connector on the same CA state.
    ``faults``: a :class:`CAFaults`.
    ``profile_ekus``: profile name -> the extended key usages the CA puts in a leaf
    issued under it (``"default"`` at least).

    Optional: ``secrets`` (strings that must never appear in repr, errors or logs);
    ``default_validity`` (the lifetime the CA gives when none is requested);
    ``open_connections`` (counts the adapter's open connections to the CA, checked to be
    zero after ``close()``); ``clock_skew`` (how far NotBefore may lie after the moment
    ``issue()`` returned; zero for a CA on this clock); ``honours_lifetime`` (False for a
    CA that gives a fixed lifetime whatever is asked; the upper bound still holds);
    ``lifetime_tolerance`` (how much shorter than requested a certificate may be: the
    CA's backdate plus rounding); ``records_reasons`` (False when ``is_revoked`` cannot
    see the reason, e.g. when it watches the CA's answers rather than its database);
    ``san_types`` (the SAN types the CA certifies, among ``dns``, ``ip``, ``email``,
    ``uri``; an ACME CA certifies only ``dns`` and ``ip``, and a request for the others
    must then raise InvalidRequestError; ``ipv4`` instead of ``ip`` for a CA that cannot
    put IPv4 and IPv6 addresses in one certificate); ``serial_entropy_bits`` (random bits
    the CA puts in serials: 64 unless a test CA is known to use fewer).
    """

    issuer: IssuerPort
    root: x509.Certificate = attrs.field(repr=False)
    connector_type: ConnectorType
    config: Mapping[str, Any] = attrs.field(repr=False)
    is_revoked: Callable[[int], Awaitable[RevocationReason | None]] = attrs.field(repr=False)
    rebuild: Callable[[], Awaitable[IssuerPort]] = attrs.field(repr=False)
    faults: CAFaults = attrs.field(repr=False)
    profile_ekus: Mapping[str, frozenset[x509.ObjectIdentifier]] = attrs.field(
        factory=lambda: {"default": SERVER_AND_CLIENT}
    )
    secrets: tuple[str, ...] = attrs.field(default=(), repr=False)
    default_validity: dt.timedelta | None = None
    open_connections: Callable[[], int] | None = attrs.field(default=None, repr=False)
    clock_skew: dt.timedelta = dt.timedelta(0)
    honours_lifetime: bool = True
    lifetime_tolerance: dt.timedelta = dt.timedelta(minutes=1)
    records_reasons: bool = True
    san_types: frozenset[str] = frozenset({"dns", "ip", "email", "uri"})
    serial_entropy_bits: int = 64

    @property
    def trust_anchors(self) -> tuple[x509.Certificate, ...]:
        """The roots issued chains must verify to: ``(root,)``."""
        return (self.root,)


HarnessFactory = Callable[[Path], AbstractAsyncContextManager[LiveIssuer]]
