"""The reference CA: an in-memory certificate authority and a well-behaved connector over it.

Like httpx's ``MockTransport`` or zarr's ``MemoryStore``, it is the in-memory stand-in
that ships next to the real thing:

* :class:`ReferenceCA` is the CA's state (root, intermediate, keys, every certificate
  issued and its revocation). Tests read it directly, as a side channel, never through
  the adapter API. :func:`ca_certificate` builds its CA certificates (and tests' own)
  with :func:`certctl_core.build_ca_certificate`.
* :class:`ReferenceIssuer` is a connector over a ``ReferenceCA`` that keeps every rule
  of the contract (typed errors, every capability, secrets masked): the whole suite
  passes on it and nothing skips. Subclasses override its public hooks
  (``serial_for``, ``sans_for``, ``validity_for``, ``public_key_for``, ``ekus_for``,
  ``chain_for``, ``unknown_serial``, ``ca_error``, ``backdate``) to break one rule at a
  time. ``ReferenceCA.fault`` and ``delay`` make the CA unreachable, failing or slow for
  the connector (the harness's ``faults``).
* :func:`reference_harness` is its contract harness; :func:`connector_type` is its
  connector type ``reference``. This module is also a certctl plugin registering both,
  but no entry point names it: load it explicitly, e.g.
  ``PluginHost.from_plugins({"reference": certctl_contracts.reference})``.

It imports neither pytest nor the suite, so a host's own tests can use it as a fake.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certctl_contracts.harness import LiveIssuer
from certctl_core import (
    Capabilities,
    CAUnavailableError,
    CAUnreachableError,
    CertctlError,
    CertificateRequest,
    CertificateStatus,
    ConfigError,
    ConfigProblem,
    ConnectorRegistrar,
    ConnectorType,
    HarnessRegistrar,
    HealthCheck,
    HealthReport,
    InvalidRequestError,
    InvalidResponseError,
    IssuedCertificate,
    IssuerBase,
    RejectedError,
    RenewalWindow,
    Revocation,
    RevocationReason,
    Secret,
    SubjectAltNames,
    hookimpl,
    parse_serial,
)
from certctl_core.pki import build_ca_certificate

__all__ = [
    "CAPABILITIES",
    "DEFAULT_VALIDITY",
    "HARNESS_PASSWORD",
    "PROFILE_EKUS",
    "IssuedRecord",
    "ReferenceCABusy",
    "ReferenceFaults",
    "ReferenceCA",
    "ReferenceIssuer",
    "build_reference_issuer",
    "ca_certificate",
    "connector_type",
    "reference_harness",
]

log = logging.getLogger(__name__)

DEFAULT_VALIDITY = dt.timedelta(hours=24)
CAPABILITIES = Capabilities(crl=True, ocsp=True, status=True, renewal_info=True)
#: Simulated round trip to the CA, so that cancellation can hit a call in flight.
LATENCY = 0.002
_NO_SUBJECT = x509.Name([])
_NO_SANS = SubjectAltNames()
#: The extended key usages of each profile the reference CA knows (unknown: default).
PROFILE_EKUS: Mapping[str, frozenset[x509.ObjectIdentifier]] = {
    "default": frozenset({ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}),
    "tls-client": frozenset({ExtendedKeyUsageOID.CLIENT_AUTH}),
}
#: The key password the harness configures; long and unique so a leak cannot hide.
HARNESS_PASSWORD = "reference-ca-password-7f3c9a1e5b2d4068"  # noqa: S105 - a throwaway CA's


def ca_certificate(
    name: str | x509.Name,
    key: CertificateIssuerPrivateKeyTypes,
    *,
    issuer: x509.Certificate | None = None,
    issuer_key: CertificateIssuerPrivateKeyTypes | None = None,
    path_length: int | None = None,
    validity: dt.timedelta = dt.timedelta(days=365),
) -> x509.Certificate:
    """A CA certificate for ``key``: self-signed (a root) unless ``issuer``/``issuer_key``.

    ``name`` is a common name or a full distinguished name. The certificate carries
    critical BasicConstraints (CA, ``path_length``) and KeyUsage (keyCertSign, cRLSign,
    digitalSignature), and both key identifiers; it is valid from five minutes ago.
    A convenience over :func:`certctl_core.build_ca_certificate`, which builds it.
    Raises ValueError when only one of ``issuer`` and ``issuer_key`` is given.
    """
    if (issuer is None) != (issuer_key is None):
        raise ValueError("give both issuer and issuer_key, or neither")
    subject = (
        name
        if isinstance(name, x509.Name)
        else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    )
    now = dt.datetime.now(dt.UTC)
    return build_ca_certificate(
        subject,
        key.public_key(),
        signer_key=issuer_key if issuer_key is not None else key,
        issuer=issuer,
        not_before=now - dt.timedelta(minutes=5),
        not_after=now + validity,
        path_length=path_length,
    )


@attrs.frozen
class IssuedRecord:
    """One certificate the reference CA issued, and its revocation if any."""

    certificate: x509.Certificate = attrs.field(repr=False)
    revoked_at: dt.datetime | None = None
    reason: RevocationReason | None = None


@attrs.define
class ReferenceCA:
    """An in-memory CA: a root, an intermediate that signs, and what it signed.

    Build one with :meth:`create` (or :meth:`from_files`). ``records`` maps each serial
    issued to its :class:`IssuedRecord`; tests read it to check what an adapter did.
    """

    root: x509.Certificate = attrs.field(repr=False)
    intermediate: x509.Certificate = attrs.field(repr=False)
    intermediate_key: ec.EllipticCurvePrivateKey = attrs.field(repr=False)
    root_key: ec.EllipticCurvePrivateKey | None = attrs.field(default=None, repr=False)
    records: dict[int, IssuedRecord] = attrs.field(factory=dict, repr=False)
    #: What reaching the CA does now: work, fail to connect, or answer "busy".
    fault: Literal["unreachable", "erroring"] | None = None
    #: Seconds each round trip to the CA takes on top of the usual latency.
    delay: float = 0.0

    def reach(self) -> None:
        """Stand-in for the network: raises ConnectionRefusedError when unreachable and
        :class:`ReferenceCABusy` when erroring (the connector must translate both)."""
        if self.fault == "unreachable":
            raise ConnectionRefusedError(111, "Connection refused")
        if self.fault == "erroring":
            raise ReferenceCABusy(retry_after=1.0)

    @classmethod
    def create(cls, name: str = "Reference") -> ReferenceCA:
        """A fresh EC P-256 root ``<name> Root CA`` and intermediate ``<name> Issuing CA``."""
        root_key = ec.generate_private_key(ec.SECP256R1())
        root = ca_certificate(f"{name} Root CA", root_key, path_length=1)
        key = ec.generate_private_key(ec.SECP256R1())
        intermediate = ca_certificate(
            f"{name} Issuing CA", key, issuer=root, issuer_key=root_key, path_length=0
        )
        return cls(root, intermediate, key, root_key)

    @classmethod
    def from_files(cls, key_file: Path, chain_file: Path, password: Secret) -> ReferenceCA:
        """The CA :meth:`write_files` wrote (without the root key).

        Raises OSError, ValueError or TypeError when the files cannot be read or are not
        an encrypted EC key and a two-certificate chain.
        """
        key = serialization.load_pem_private_key(key_file.read_bytes(), password.reveal().encode())
        chain = x509.load_pem_x509_certificates(chain_file.read_bytes())
        if not isinstance(key, ec.EllipticCurvePrivateKey) or len(chain) != 2:
            raise ValueError("expected an EC key and a two-certificate chain")
        return cls(root=chain[1], intermediate=chain[0], intermediate_key=key)

    def write_files(self, directory: Path, password: str) -> dict[str, Any]:
        """Write the intermediate's key (encrypted) and the chain into ``directory``.

        Returns the ``reference`` connector's configuration for them.
        """
        key_file = directory / "issuing-ca.key"
        chain_file = directory / "chain.pem"
        key_file.write_bytes(
            self.intermediate_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(password.encode()),
            )
        )
        chain_file.write_bytes(
            b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)
        )
        return {
            "key_file": str(key_file),
            "chain_file": str(chain_file),
            "key_password": password,
            "default_validity_seconds": DEFAULT_VALIDITY.total_seconds(),
        }

    @property
    def chain(self) -> tuple[x509.Certificate, x509.Certificate]:
        """The issuing chain: intermediate, then root."""
        return (self.intermediate, self.root)

    def sign(
        self,
        public_key: CertificatePublicKeyTypes,
        *,
        subject: x509.Name = _NO_SUBJECT,
        sans: SubjectAltNames = _NO_SANS,
        validity: dt.timedelta = DEFAULT_VALIDITY,
        serial: int | None = None,
        backdate: dt.timedelta = dt.timedelta(seconds=30),
        ekus: frozenset[x509.ObjectIdentifier] = PROFILE_EKUS["default"],
    ) -> x509.Certificate:
        """Issue and record a leaf with extended key usages ``ekus`` for ``public_key``.

        NotBefore is ``backdate`` before now, NotAfter ``validity`` after now. The SAN
        extension is critical when the subject is empty (RFC 5280 §4.2.1.6).
        """
        now = dt.datetime.now(dt.UTC)
        serial = x509.random_serial_number() if serial is None else serial
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.intermediate.subject)
            .public_key(public_key)
            .serial_number(serial)
            .not_valid_before(now - backdate)
            .not_valid_after(now + validity)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self.intermediate_key.public_key()
                ),
                critical=False,
            )
        )
        if ekus:
            ordered = sorted(ekus, key=lambda oid: oid.dotted_string)
            builder = builder.add_extension(x509.ExtendedKeyUsage(ordered), critical=False)
        if len(sans):
            builder = builder.add_extension(
                x509.SubjectAlternativeName(sans.to_general_names()), critical=not len(subject)
            )
        leaf = builder.sign(self.intermediate_key, hashes.SHA256())
        self.records[serial] = IssuedRecord(leaf)
        return leaf

    def revoke(
        self, serial: int, reason: RevocationReason = RevocationReason.UNSPECIFIED
    ) -> IssuedRecord:
        """Mark ``serial`` revoked now (seconds precision); raises KeyError if never issued."""
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        record = attrs.evolve(self.records[serial], revoked_at=now, reason=reason)
        self.records[serial] = record
        return record

    def status(self, serial: int) -> CertificateStatus:
        """What a CRL or OCSP responder of this CA would say about ``serial``."""
        record = self.records.get(serial)
        if record is None:
            return CertificateStatus(serial, "unknown")
        if record.revoked_at is None:
            return CertificateStatus(serial, "good")
        return CertificateStatus(serial, "revoked", record.revoked_at, record.reason)

    def crl(self, next_update: dt.timedelta = dt.timedelta(hours=1)) -> bytes:
        """A DER CRL signed by the intermediate, listing every revoked serial."""
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.intermediate.subject)
            .last_update(now)
            .next_update(now + next_update)
            .add_extension(x509.CRLNumber(int(now.timestamp())), critical=False)
        )
        for serial, record in self.records.items():
            if record.revoked_at is None:
                continue
            entry = x509.RevokedCertificateBuilder().serial_number(serial)
            entry = entry.revocation_date(record.revoked_at)
            if record.reason not in (None, RevocationReason.UNSPECIFIED):
                entry = entry.add_extension(x509.CRLReason(record.reason.x509_flag), False)
            builder = builder.add_revoked_certificate(entry.build())
        crl = builder.sign(self.intermediate_key, hashes.SHA256())
        return crl.public_bytes(serialization.Encoding.DER)

    def ocsp(self, request: ocsp.OCSPRequest) -> bytes:
        """A DER OCSP response signed by the intermediate (``unauthorized`` if unknown)."""
        record = self.records.get(request.serial_number)
        if record is None:
            response = ocsp.OCSPResponseBuilder.build_unsuccessful(
                ocsp.OCSPResponseStatus.UNAUTHORIZED
            )
            return response.public_bytes(serialization.Encoding.DER)
        now = dt.datetime.now(dt.UTC)
        revoked = record.revoked_at is not None
        builder = ocsp.OCSPResponseBuilder().add_response(
            cert=record.certificate,
            issuer=self.intermediate,
            algorithm=hashes.SHA1(),  # noqa: S303 (RFC 5019 CertIDs are SHA-1)
            cert_status=ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD,
            this_update=now,
            next_update=now + dt.timedelta(hours=1),
            revocation_time=record.revoked_at,
            revocation_reason=record.reason.x509_flag if record.reason is not None else None,
        )
        builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, self.intermediate)
        response = builder.sign(self.intermediate_key, hashes.SHA256())
        return response.public_bytes(serialization.Encoding.DER)


class ReferenceCABusy(Exception):
    """The reference CA's "503": busy for ``retry_after`` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"busy, retry after {retry_after}s")
        self.retry_after = retry_after


class ReferenceIssuer(IssuerBase):
    """A connector whose CA is the in-memory :class:`ReferenceCA` ``ca``.

    ``open_connections`` simulates connections to the CA: one is opened by the first
    call that reaches the CA, and ``close()`` closes it.
    """

    connector_name = "reference"
    #: How far before now NotBefore lies.
    backdate = dt.timedelta(seconds=30)

    def __init__(
        self,
        issuer_id: str,
        *,
        ca: ReferenceCA,
        password: Secret | None = None,
        default_validity: dt.timedelta = DEFAULT_VALIDITY,
    ) -> None:
        super().__init__(issuer_id)
        self.ca = ca
        self.password = password
        self.default_validity = default_validity
        self.open_connections = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(issuer_id={self.issuer_id!r}, closed={self.closed})"

    @property
    def capabilities(self) -> Capabilities:
        return CAPABILITIES

    # -- hooks: what a subclass changes to break one rule ------------------------------

    def serial_for(self, request: CertificateRequest) -> int:
        """The serial of the certificate for ``request`` (random, 159 bits)."""
        return x509.random_serial_number()

    def sans_for(self, request: CertificateRequest) -> SubjectAltNames:
        """The SANs to certify: exactly the CSR's."""
        return request.sans

    def validity_for(self, request: CertificateRequest) -> dt.timedelta:
        """The lifetime: the request's, capped by its profile, else the default."""
        return request.effective_validity(self.default_validity)

    def public_key_for(self, request: CertificateRequest) -> CertificatePublicKeyTypes:
        """The key to certify: the CSR's."""
        return request.csr.public_key()

    def ekus_for(self, request: CertificateRequest) -> frozenset[x509.ObjectIdentifier]:
        """The extended key usages of ``request.profile`` (the default for unknown names)."""
        return PROFILE_EKUS.get(request.profile.name, PROFILE_EKUS["default"])

    def chain_for(self, leaf: x509.Certificate) -> tuple[x509.Certificate, ...]:
        """The chain handed out: the leaf and the intermediate, never the root."""
        return (leaf, self.ca.intermediate)

    def ca_error(self, exc: Exception) -> Exception:
        """The CertctlError for a failure to reach the CA (the one translation place)."""
        if isinstance(exc, ReferenceCABusy):
            return CAUnavailableError("the CA is busy", status=503, retry_after=exc.retry_after)
        if isinstance(exc, OSError):
            return CAUnreachableError(f"cannot reach the CA: {exc.strerror}", retry_after=1.0)
        return InvalidResponseError(f"unexpected failure talking to the CA: {exc}")

    def unknown_serial(self, serial: int) -> Exception:
        """The error for revoking a serial this CA never issued."""
        return RejectedError(
            f"no certificate with serial {serial:#x} was issued by this CA", status=404
        )

    # -- the port ----------------------------------------------------------------------

    async def _round_trip(self) -> None:
        """Stand-in for a request to a remote CA."""
        self.open_connections = max(self.open_connections, 1)
        await asyncio.sleep(LATENCY + self.ca.delay)
        try:
            self.ca.reach()
        except Exception as exc:  # noqa: BLE001 - ca_error decides what each becomes
            raise self.ca_error(exc) from None

    async def issue(self, request: CertificateRequest) -> IssuedCertificate:
        self.ensure_open()
        sans = self.sans_for(request)
        validity = self.validity_for(request)
        await self._round_trip()
        self.ensure_open()
        leaf = self.ca.sign(
            self.public_key_for(request),
            subject=request.csr.subject,
            sans=sans,
            validity=validity,
            serial=self.serial_for(request),
            backdate=self.backdate,
            ekus=self.ekus_for(request),
        )
        log.debug("issued serial %#x to %s", leaf.serial_number, leaf.subject.rfc4514_string())
        return IssuedCertificate.from_certificates(self.chain_for(leaf))

    async def revoke(
        self, serial: int, reason: RevocationReason = RevocationReason.UNSPECIFIED
    ) -> Revocation:
        self.ensure_open()
        serial = parse_serial(serial)
        await self._round_trip()
        record = self.ca.records.get(serial)
        if record is None:
            raise self.unknown_serial(serial)
        if record.revoked_at is not None:
            return Revocation(serial, reason, already_revoked=True, revoked_at=record.revoked_at)
        record = self.ca.revoke(serial, reason)
        log.debug("revoked serial %#x (%s)", serial, reason.rfc_name)
        return Revocation(serial, reason, revoked_at=record.revoked_at)

    async def ca_chain(self) -> tuple[x509.Certificate, ...]:
        self.ensure_open()
        return self.ca.chain

    async def check(self) -> HealthReport:
        self.ensure_open()
        try:
            await self._round_trip()
        except CertctlError as exc:
            return HealthReport((HealthCheck("ca", False, f"the CA cannot be used: {exc}"),))
        checks = [HealthCheck("ca", True, f"issuing CA {self.ca.intermediate.subject}")]
        if self.password is not None:
            checks.append(
                HealthCheck("password", bool(self.password), "a key password is configured")
            )
        return HealthReport(tuple(checks))

    def renewal_window_for(self, certificate: x509.Certificate) -> RenewalWindow:
        """A tenth of the lifetime, centred a third of it before NotAfter (as Pebble
        and Let's Encrypt suggest); a revoked certificate's window is already open."""
        start = certificate.not_valid_before_utc
        end = certificate.not_valid_after_utc
        life = end - start
        record = self.ca.records[certificate.serial_number]
        if record.revoked_at is not None:
            return RenewalWindow(start=record.revoked_at, end=record.revoked_at)
        centre = end - life / 3
        return RenewalWindow(start=centre - life / 20, end=centre + life / 20)

    async def renewal_info(self, certificate: x509.Certificate) -> RenewalWindow:
        self.ensure_open()
        await self._round_trip()
        record = self.ca.records.get(certificate.serial_number)
        if record is None or record.certificate != certificate:
            raise self.unknown_serial(certificate.serial_number)
        return self.renewal_window_for(certificate)

    async def status(self, serial: int) -> CertificateStatus:
        self.ensure_open()
        serial = parse_serial(serial)
        await self._round_trip()
        return self.ca.status(serial)

    async def crl(self) -> bytes:
        self.ensure_open()
        await self._round_trip()
        return self.ca.crl()

    async def ocsp(self, request_der: bytes) -> bytes:
        self.ensure_open()
        try:
            request = ocsp.load_der_ocsp_request(request_der)
        except ValueError as exc:
            raise InvalidRequestError("the OCSP request is malformed") from exc
        await self._round_trip()
        return self.ca.ocsp(request)

    async def release(self) -> None:
        self.open_connections = 0


async def build_reference_issuer(
    issuer_id: str, config: Mapping[str, Any], *, cls: type[ReferenceIssuer] = ReferenceIssuer
) -> ReferenceIssuer:
    """Connector factory for ``{"key_file", "chain_file", "key_password"}`` and optionally
    ``"default_validity_seconds"`` (files as :meth:`ReferenceCA.write_files` writes them).

    Raises ConfigError listing every problem.
    """
    problems: list[ConfigProblem] = []
    for name in ("key_file", "chain_file", "key_password"):
        if not isinstance(config.get(name), str) or not config.get(name):
            problems.append(ConfigProblem(name, "must be a non-empty string"))
    seconds = config.get("default_validity_seconds", DEFAULT_VALIDITY.total_seconds())
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
        problems.append(ConfigProblem("default_validity_seconds", "must be a positive number"))
    if problems:
        raise ConfigError(problems)
    password = Secret(str(config["key_password"]))
    try:
        ca = await asyncio.to_thread(
            ReferenceCA.from_files, Path(config["key_file"]), Path(config["chain_file"]), password
        )
    except (OSError, ValueError, TypeError) as exc:
        problem = f"cannot load the CA key or chain ({type(exc).__name__})"
        raise ConfigError([ConfigProblem("key_file", problem)]) from None
    return cls(issuer_id, ca=ca, password=password, default_validity=dt.timedelta(seconds=seconds))


def connector_type() -> ConnectorType:
    """The connector type ``reference``, for a registry built by hand."""
    return ConnectorType(
        name="reference",
        factory=build_reference_issuer,
        version="0",
        description="in-memory reference CA (certctl_contracts.reference)",
        capabilities=CAPABILITIES,
        secret_fields=frozenset({"key_password"}),
    )


@attrs.define
class ReferenceFaults:
    """The harness's faults: they set the CA's ``fault`` / ``delay`` for a while."""

    ca: ReferenceCA

    @asynccontextmanager
    async def _fault(self, fault: Literal["unreachable", "erroring"]) -> AsyncIterator[None]:
        self.ca.fault = fault
        try:
            yield
        finally:
            self.ca.fault = None

    def unreachable(self) -> AbstractAsyncContextManager[None]:
        return self._fault("unreachable")

    def erroring(self) -> AbstractAsyncContextManager[None]:
        return self._fault("erroring")

    @asynccontextmanager
    async def slow(self, seconds: float) -> AsyncIterator[None]:
        self.ca.delay = seconds
        try:
            yield
        finally:
            self.ca.delay = 0.0


@asynccontextmanager
async def _harness(
    tmp_path: Path, cls: type[ReferenceIssuer], kind: ConnectorType | None
) -> AsyncIterator[LiveIssuer]:
    created = ReferenceCA.create()
    config = created.write_files(tmp_path, HARNESS_PASSWORD)
    issuer = await build_reference_issuer(f"{cls.connector_name}-under-test", config, cls=cls)
    state = issuer.ca  # the CA's state, loaded by the factory; rebuilt connectors share it
    built: list[ReferenceIssuer] = [issuer]

    async def rebuild() -> ReferenceIssuer:
        again = await build_reference_issuer(f"{cls.connector_name}-rebuilt", config, cls=cls)
        again.ca = state
        built.append(again)
        return again

    async def is_revoked(serial: int) -> RevocationReason | None:
        record = state.records.get(serial)
        if record is None or record.revoked_at is None:
            return None
        return record.reason

    try:
        yield LiveIssuer(
            issuer=issuer,
            root=created.root,
            connector_type=kind or connector_type(),
            config=config,
            is_revoked=is_revoked,
            rebuild=rebuild,
            faults=ReferenceFaults(state),
            profile_ekus=PROFILE_EKUS,
            secrets=(HARNESS_PASSWORD,),
            default_validity=DEFAULT_VALIDITY,
            open_connections=lambda: sum(i.open_connections for i in built),
            lifetime_tolerance=dt.timedelta(seconds=5),
        )
    finally:
        for each in built:
            # A close() that raises is the suite's to report (once), not every teardown's.
            with contextlib.suppress(Exception):
                await each.close()


def reference_harness(
    tmp_path: Path,
    *,
    issuer_class: type[ReferenceIssuer] = ReferenceIssuer,
    kind: ConnectorType | None = None,
) -> AbstractAsyncContextManager[LiveIssuer]:
    """Harness factory: a live ``issuer_class`` over a fresh CA whose files are in
    ``tmp_path``, built through the connector factory and closed on exit. ``kind``
    replaces the connector type the harness reports (for tests of the suite)."""
    return _harness(tmp_path, issuer_class, kind)


@hookimpl
def certctl_register_connectors(registrar: ConnectorRegistrar) -> None:
    registrar.add(connector_type())


@hookimpl
def certctl_register_harnesses(registrar: HarnessRegistrar) -> None:
    registrar.add("reference", reference_harness)
