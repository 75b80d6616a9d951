"""The port every issuer connector implements, and how a plugin declares a connector type.

This module is the contract a connector author reads. It imports only the domain.

An issuer connector is an object satisfying :class:`IssuerPort`. It is built by the
``factory`` of a :class:`ConnectorType` that a plugin registers through the
``certctl_register_connectors`` hook (see :mod:`certctl_core.hookspecs`). One connector
object serves one issuer id; the registry builds a new one when the config changes
(:meth:`certctl_core.registry.Registry.rebuild`) and closes the old one.

Rules every connector follows (the contract suite checks them):

* Every method is a coroutine and safe to call concurrently from one event loop.
* Only :class:`~certctl_core.errors.CertctlError` subclasses escape; I/O and parsing
  errors are translated in one place inside the adapter.
* ``issue`` honours ``request.validity`` (already capped by the profile's max TTL by
  the registry), returns the leaf plus the full chain, and checks what the CA returned.
* ``revoke`` of a certificate already revoked returns ``Revocation(already_revoked=True)``.
* Optional operations (``crl``, ``ocsp``, ``status``, ``renewal_info``) exist only where
  ``capabilities`` says so; otherwise they raise
  :class:`~certctl_core.errors.UnsupportedCapabilityError`.
* ``close`` releases connections and tasks; calling it twice is harmless; any other call
  after it raises :class:`~certctl_core.errors.IssuerClosedError`.
* Secrets never appear in ``repr``, ``str``, logs or error messages.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import attrs
from cryptography import x509

from certctl_core.domain import (
    Capabilities,
    CertificateRequest,
    CertificateStatus,
    HealthReport,
    IssuedCertificate,
    RenewalWindow,
    Revocation,
    RevocationReason,
)

__all__ = ["ConnectorFactory", "ConnectorType", "EnvSeed", "IssuerPort"]


@runtime_checkable
class IssuerPort(Protocol):
    """An issuer connector: drives one certificate authority for one issuer id."""

    @property
    def issuer_id(self) -> str:
        """The id the registry built this connector for."""
        ...

    @property
    def capabilities(self) -> Capabilities:
        """Which optional operations this connector offers."""
        ...

    async def issue(self, request: CertificateRequest) -> IssuedCertificate:
        """Issue a certificate for ``request.csr``; raises CertctlError subclasses."""
        ...

    async def revoke(
        self, serial: int, reason: RevocationReason = RevocationReason.UNSPECIFIED
    ) -> Revocation:
        """Revoke by serial with an RFC 5280 reason; idempotent (see ``already_revoked``)."""
        ...

    async def ca_chain(self) -> tuple[x509.Certificate, ...]:
        """The issuing CA chain: intermediates first, the trust anchor (root) last."""
        ...

    async def check(self) -> HealthReport:
        """Diagnose the connector and its CA; never raises for a failed check."""
        ...

    async def crl(self) -> bytes:
        """Capability ``crl``: the current CRL, DER-encoded and signed."""
        ...

    async def ocsp(self, request_der: bytes) -> bytes:
        """Capability ``ocsp``: a signed DER OCSP response to a DER OCSP request."""
        ...

    async def status(self, serial: int) -> CertificateStatus:
        """Capability ``status``: the revocation status of ``serial``."""
        ...

    async def renewal_info(self, certificate: x509.Certificate) -> RenewalWindow:
        """Capability ``renewal_info``: when the CA suggests renewing ``certificate``."""
        ...

    async def close(self) -> None:
        """Release connections and tasks. Idempotent."""
        ...


#: ``factory(issuer_id, config)`` validates ``config`` (raising ConfigError listing
#: every problem) and returns a ready connector. It must not contact the CA: that is
#: what ``check()`` is for.
ConnectorFactory = Callable[[str, Mapping[str, Any]], Awaitable[IssuerPort]]

#: ``env_seed(environ)`` returns ``(issuer_id, config)`` for an issuer of this type that
#: the environment describes (e.g. ``CERTCTL_STEPCA_URL`` and friends), or None. A host
#: with an empty store may create that issuer at start. Pure: no I/O beyond ``environ``.
EnvSeed = Callable[[Mapping[str, str]], "tuple[str, Mapping[str, Any]] | None"]


@attrs.frozen
class ConnectorType:
    """A kind of connector a plugin offers, e.g. ``stepca``."""

    name: str
    factory: ConnectorFactory = attrs.field(repr=False)
    version: str = ""
    description: str = ""
    #: Capabilities a connector of this type may offer (a built one may offer fewer).
    capabilities: Capabilities = attrs.field(factory=Capabilities)
    #: Top-level config keys holding secrets: hosts seal them at rest and mask them on
    #: display (a password, never a path to a password file).
    secret_fields: frozenset[str] = frozenset()
    #: True when one connector of this type owns its CA state (files, counters, a
    #: ledger) and no second process may build another on the same config: hosts then
    #: run it in one process only (the CLI refuses an issuer the server runs).
    single_process: bool = False
    #: Top-level config keys that, when set, put a ``single_process`` connector's state
    #: where several processes share it safely (the Local CA's ``ledger_url``): such a
    #: config may run in more than one process. See :meth:`runs_in_one_process`.
    shared_state_fields: frozenset[str] = frozenset()
    #: Top-level config keys naming files whose *content* the connector reads at build
    #: time (a key file, a password file, a root certificate). The registry fingerprints
    #: them (SHA-256) with the config: a file changed in place makes an equal config a
    #: change, so the next rebuild builds a new generation (ADR 0022).
    file_fields: frozenset[str] = frozenset()
    #: Top-level config keys that decide what the secrets unlock (the CA, the account,
    #: the key file). Hosts that keep a stored secret behind a masked placeholder refuse
    #: to do so when one of these changes: the secret must be sent again (ADR 0022).
    secret_scope: frozenset[str] = frozenset()
    #: Top-level config keys that decide *which CA* a connector drives (its state, its
    #: keys), not how it reaches it: changing one on an existing issuer would start
    #: another CA, and the certificates of the old one could no longer be revoked or
    #: answered for. Hosts refuse such a change unless explicitly asked.
    identity_fields: frozenset[str] = frozenset()
    #: ``check()`` line name -> the config key it judges. A failed line (``ok`` False)
    #: means the config itself is wrong (e.g. a validity above the CA's maximum), not
    #: that the CA is unreachable: hosts may run ``check()`` on a new generation before
    #: serving it and refuse the config then. Lines that are absent or None pass.
    config_checks: Mapping[str, str] = attrs.field(factory=dict, hash=False)
    #: Optional: the issuer the environment describes, for hosts seeding an empty store.
    env_seed: EnvSeed | None = attrs.field(default=None, repr=False)

    def runs_in_one_process(self, config: Mapping[str, Any]) -> bool:
        """True when a connector built from ``config`` owns CA state no second process
        may share: the type is ``single_process`` and no ``shared_state_fields`` is set."""
        return self.single_process and not any(
            config.get(name) for name in self.shared_state_fields
        )
