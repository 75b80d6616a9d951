"""The ``example`` connector: a self-signed CA held in memory, for demonstration.

A real connector talks to a CA over the network; this one signs locally, but follows
every rule of the port: typed errors only, the requested validity honoured, idempotent
revoke, ``close()`` idempotent, secrets masked.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certctl_core import (
    Capabilities,
    CAUnavailableError,
    CAUnreachableError,
    CertctlError,
    CertificateRequest,
    CertificateStatus,
    ConfigError,
    ConfigProblem,
    HealthCheck,
    HealthReport,
    InvalidRequestError,
    IssuedCertificate,
    IssuerBase,
    RejectedError,
    Revocation,
    RevocationReason,
    Secret,
    parse_serial,
)

__all__ = ["ExampleBackend", "ExampleIssuer", "build_example_issuer"]

log = logging.getLogger(__name__)


class ExampleBackend:
    """Stands in for a remote CA: its key, root and records, and the network to it.

    ``reach()`` is what a real connector's HTTP request would do: wait ``delay`` seconds,
    then fail with OSError when ``down`` or answer "busy" (``busy_for`` seconds) like an
    HTTP 503. Tests flip these to make the CA fail (see ``plugin.example_harness``).
    """

    def __init__(self, name: str) -> None:
        now = dt.datetime.now(dt.UTC)
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        public = self.key.public_key()
        self.root = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.issued: dict[int, x509.Certificate] = {}
        self.revoked: dict[int, tuple[dt.datetime, RevocationReason]] = {}
        self.down = False
        self.busy_for: float | None = None
        self.delay = 0.0

    async def reach(self) -> None:
        await asyncio.sleep(self.delay)
        if self.down:
            raise ConnectionRefusedError(111, "Connection refused")
        if self.busy_for is not None:
            raise CAUnavailableError("the CA is busy", status=503, retry_after=self.busy_for)


class ExampleIssuer(IssuerBase):
    """Issues from a fresh self-signed CA. Config: ``api_token`` (a secret, unused here
    but shown masked), optional ``default_validity_seconds``."""

    connector_name = "example"

    def __init__(
        self,
        issuer_id: str,
        *,
        token: Secret,
        default_validity: dt.timedelta,
        backend: ExampleBackend | None = None,
    ) -> None:
        super().__init__(issuer_id)
        self.backend = backend or ExampleBackend(f"Example CA {issuer_id}")
        self._token = token
        self._default_validity = default_validity
        # The CA's state lives in the backend: a second connector on it shares it.
        self._key = self.backend.key
        self.root = self.backend.root
        self._issued = self.backend.issued
        self._revoked = self.backend.revoked

    def __repr__(self) -> str:  # the token stays out: Secret masks it anyway
        return f"ExampleIssuer(issuer_id={self.issuer_id!r})"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(status=True)

    async def _call_ca(self) -> None:
        """The one place transport errors become CertctlErrors."""
        try:
            await self.backend.reach()
        except OSError as exc:
            raise CAUnreachableError(
                f"cannot reach the CA: {exc.strerror}", retry_after=1.0
            ) from None

    async def issue(self, request: CertificateRequest) -> IssuedCertificate:
        self.ensure_open()
        await self._call_ca()  # a real connector awaits the CA here
        self.ensure_open()
        now = dt.datetime.now(dt.UTC)
        serial = x509.random_serial_number()
        builder = (
            x509.CertificateBuilder()
            .subject_name(request.csr.subject)
            .issuer_name(self.root.subject)
            .public_key(request.csr.public_key())
            .serial_number(serial)
            .not_valid_before(now - dt.timedelta(seconds=30))
            .not_valid_after(now + request.effective_validity(self._default_validity))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        sans = request.sans
        if len(sans):
            builder = builder.add_extension(
                x509.SubjectAlternativeName(sans.to_general_names()),
                critical=not len(request.csr.subject),
            )
        try:
            leaf = builder.sign(self._key, hashes.SHA256())
        except (ValueError, TypeError) as exc:
            raise InvalidRequestError(f"cannot issue this request: {exc}") from None
        self._issued[serial] = leaf
        log.debug("issued serial %#x", serial)
        return IssuedCertificate.from_certificates((leaf,))

    async def revoke(
        self, serial: int, reason: RevocationReason = RevocationReason.UNSPECIFIED
    ) -> Revocation:
        self.ensure_open()
        serial = parse_serial(serial)  # InvalidRequestError for 0, negative, > 20 octets
        await self._call_ca()
        if serial not in self._issued:
            raise RejectedError(f"serial {serial:#x} was not issued here")
        if serial in self._revoked:
            at, _ = self._revoked[serial]
            return Revocation(serial, reason, already_revoked=True, revoked_at=at)
        at = dt.datetime.now(dt.UTC)
        self._revoked[serial] = (at, reason)
        return Revocation(serial, reason, revoked_at=at)

    async def status(self, serial: int) -> CertificateStatus:
        self.ensure_open()
        serial = parse_serial(serial)
        if serial in self._revoked:
            at, reason = self._revoked[serial]
            return CertificateStatus(serial, "revoked", at, reason)
        return CertificateStatus(serial, "good" if serial in self._issued else "unknown")

    async def ca_chain(self) -> tuple[x509.Certificate, ...]:
        self.ensure_open()
        return (self.root,)

    async def check(self) -> HealthReport:
        self.ensure_open()
        try:
            await self._call_ca()  # check() probes the CA, and reports instead of raising
        except CertctlError as exc:
            return HealthReport((HealthCheck("ca", False, f"the CA cannot be used: {exc}"),))
        return HealthReport((HealthCheck("ca", True, "in-process CA ready"),))


async def build_example_issuer(issuer_id: str, config: Mapping[str, Any]) -> ExampleIssuer:
    """Connector factory. Raises ConfigError listing every invalid field."""
    problems = []
    token = config.get("api_token")
    if not isinstance(token, str) or not token:
        problems.append(ConfigProblem("api_token", "must be a non-empty string"))
    seconds = config.get("default_validity_seconds", 86400)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
        problems.append(ConfigProblem("default_validity_seconds", "must be a positive number"))
    if problems:
        raise ConfigError(problems, issuer_id=issuer_id, connector="example")
    return ExampleIssuer(
        issuer_id,
        token=Secret(str(token)),
        default_validity=dt.timedelta(seconds=seconds),
    )
