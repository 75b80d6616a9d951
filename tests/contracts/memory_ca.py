"""A small in-memory CA adapter: the reference the contract suite is developed against.

It behaves as a well-written connector should (IssuerBase, typed errors, every
capability, secrets masked), so the whole suite passes on it and nothing skips. The
deliberately broken adapters in ``broken_adapters`` subclass it and break one rule each.

It is also a certctl plugin (the hook implementations at the bottom), registering the
connector type ``memory`` and the contract harness ``memory``; the repository loads it
with ``PluginHost.from_plugins`` rather than an entry point.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certctl_contracts.harness import LiveIssuer
from certctl_core import (
    Capabilities,
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
    IssuedCertificate,
    IssuerBase,
    RejectedError,
    Revocation,
    RevocationReason,
    Secret,
    SubjectAltNames,
    hookimpl,
    parse_serial,
)

__all__ = ["DEFAULT_VALIDITY", "Authority", "MemoryCA", "build_memory_ca", "memory_harness"]

log = logging.getLogger(__name__)

DEFAULT_VALIDITY = dt.timedelta(hours=24)
#: Simulated round trip to the CA, so that cancellation can hit a call in flight.
LATENCY = 0.002


@attrs.frozen
class Authority:
    """A root and an intermediate; the intermediate signs leaves, CRLs and OCSP answers."""

    root: x509.Certificate = attrs.field(repr=False)
    intermediate: x509.Certificate = attrs.field(repr=False)
    intermediate_key: ec.EllipticCurvePrivateKey = attrs.field(repr=False)

    @classmethod
    def create(cls, name: str = "Memory") -> tuple[Authority, ec.EllipticCurvePrivateKey]:
        """A new root and intermediate; returns the authority and the root key."""
        now = dt.datetime.now(dt.UTC)
        root_key = ec.generate_private_key(ec.SECP256R1())
        root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} Root CA")])
        root = (
            _ca_builder(root_name, root_name, root_key.public_key(), root_key.public_key(), now)
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .sign(root_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        sub_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} Issuing CA")])
        intermediate = (
            _ca_builder(sub_name, root_name, key.public_key(), root_key.public_key(), now)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(root_key, hashes.SHA256())
        )
        return cls(root, intermediate, key), root_key


def _ca_builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer_key: ec.EllipticCurvePublicKey,
    now: dt.datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key), critical=False
        )
    )


@attrs.frozen
class _Record:
    certificate: x509.Certificate
    revoked_at: dt.datetime | None = None
    reason: RevocationReason | None = None


class MemoryCA(IssuerBase):
    """An issuer whose CA lives in this process. Subclasses override the ``_`` hooks."""

    connector_name = "memory"

    def __init__(
        self,
        issuer_id: str,
        *,
        authority: Authority,
        password: Secret,
        default_validity: dt.timedelta = DEFAULT_VALIDITY,
    ) -> None:
        super().__init__(issuer_id)
        self._authority = authority
        self._password = password
        self._default_validity = default_validity
        self._records: dict[int, _Record] = {}
        #: simulated connections to the CA: opened on first use, closed by close()
        self.open_connections = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(issuer_id={self.issuer_id!r}, closed={self.closed})"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(crl=True, ocsp=True, status=True)

    # -- hooks the broken adapters override --------------------------------------------

    def _new_serial(self) -> int:
        return x509.random_serial_number()

    def _sans(self, request: CertificateRequest) -> SubjectAltNames:
        return request.sans

    def _validity(self, request: CertificateRequest) -> dt.timedelta:
        return request.effective_validity(self._default_validity)

    def _public_key(self, request: CertificateRequest) -> Any:
        return request.csr.public_key()

    def _unknown_serial(self, serial: int) -> Exception:
        return RejectedError(
            f"no certificate with serial {serial:#x} was issued by this CA",
            status=404,
        )

    # -- the port ----------------------------------------------------------------------

    async def _round_trip(self) -> None:
        """Stand-in for a request to a remote CA."""
        self.open_connections = max(self.open_connections, 1)
        await asyncio.sleep(LATENCY)

    async def issue(self, request: CertificateRequest) -> IssuedCertificate:
        self.ensure_open()
        if not request.csr.is_signature_valid:
            raise InvalidRequestError("the CSR's signature does not verify")
        sans = self._sans(request)
        validity = self._validity(request)
        await self._round_trip()
        self.ensure_open()
        now = dt.datetime.now(dt.UTC)
        serial = self._new_serial()
        issuer = self._authority.intermediate
        builder = (
            x509.CertificateBuilder()
            .subject_name(request.csr.subject)
            .issuer_name(issuer.subject)
            .public_key(self._public_key(request))
            .serial_number(serial)
            .not_valid_before(now - dt.timedelta(seconds=30))
            .not_valid_after(now + validity)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self._authority.intermediate_key.public_key()
                ),
                critical=False,
            )
        )
        if len(sans):
            builder = builder.add_extension(
                x509.SubjectAlternativeName(sans.to_general_names()),
                critical=not len(request.csr.subject),
            )
        leaf = builder.sign(self._authority.intermediate_key, hashes.SHA256())
        self._records[serial] = _Record(leaf)
        log.debug("issued serial %#x to %s", serial, leaf.subject.rfc4514_string())
        return IssuedCertificate.from_certificates((leaf, issuer))

    async def revoke(
        self, serial: int, reason: RevocationReason = RevocationReason.UNSPECIFIED
    ) -> Revocation:
        self.ensure_open()
        serial = parse_serial(serial)
        await self._round_trip()
        record = self._records.get(serial)
        if record is None:
            raise self._unknown_serial(serial)
        if record.revoked_at is not None:
            return Revocation(serial, reason, already_revoked=True, revoked_at=record.revoked_at)
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        self._records[serial] = attrs.evolve(record, revoked_at=now, reason=reason)
        log.debug("revoked serial %#x (%s)", serial, reason.rfc_name)
        return Revocation(serial, reason, revoked_at=now)

    async def ca_chain(self) -> tuple[x509.Certificate, ...]:
        self.ensure_open()
        return (self._authority.intermediate, self._authority.root)

    async def check(self) -> HealthReport:
        self.ensure_open()
        return HealthReport(
            (
                HealthCheck("password", bool(self._password), "a key password is configured"),
                HealthCheck("ca", True, f"issuing CA {self._authority.intermediate.subject}"),
            )
        )

    async def status(self, serial: int) -> CertificateStatus:
        self.ensure_open()
        serial = parse_serial(serial)
        await self._round_trip()
        record = self._records.get(serial)
        if record is None:
            return CertificateStatus(serial, "unknown")
        if record.revoked_at is None:
            return CertificateStatus(serial, "good")
        return CertificateStatus(serial, "revoked", record.revoked_at, record.reason)

    async def crl(self) -> bytes:
        self.ensure_open()
        await self._round_trip()
        now = dt.datetime.now(dt.UTC)
        issuer = self._authority.intermediate
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(issuer.subject)
            .last_update(now)
            .next_update(now + dt.timedelta(hours=1))
            .add_extension(x509.CRLNumber(int(now.timestamp())), critical=False)
        )
        for serial, record in self._records.items():
            if record.revoked_at is None:
                continue
            entry = x509.RevokedCertificateBuilder().serial_number(serial)
            entry = entry.revocation_date(record.revoked_at)
            if record.reason not in (None, RevocationReason.UNSPECIFIED):
                entry = entry.add_extension(x509.CRLReason(record.reason.x509_flag), False)
            builder = builder.add_revoked_certificate(entry.build())
        crl = builder.sign(self._authority.intermediate_key, hashes.SHA256())
        return crl.public_bytes(serialization.Encoding.DER)

    async def ocsp(self, request_der: bytes) -> bytes:
        self.ensure_open()
        try:
            request = ocsp.load_der_ocsp_request(request_der)
        except ValueError as exc:
            raise InvalidRequestError("the OCSP request is malformed") from exc
        await self._round_trip()
        record = self._records.get(request.serial_number)
        if record is None:
            response = ocsp.OCSPResponseBuilder.build_unsuccessful(
                ocsp.OCSPResponseStatus.UNAUTHORIZED
            )
            return response.public_bytes(serialization.Encoding.DER)
        now = dt.datetime.now(dt.UTC)
        revoked = record.revoked_at is not None
        builder = ocsp.OCSPResponseBuilder().add_response(
            cert=record.certificate,
            issuer=self._authority.intermediate,
            algorithm=hashes.SHA1(),
            cert_status=ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD,
            this_update=now,
            next_update=now + dt.timedelta(hours=1),
            revocation_time=record.revoked_at,
            revocation_reason=record.reason.x509_flag if record.reason is not None else None,
        )
        builder = builder.responder_id(
            ocsp.OCSPResponderEncoding.HASH, self._authority.intermediate
        )
        response = builder.sign(self._authority.intermediate_key, hashes.SHA256())
        return response.public_bytes(serialization.Encoding.DER)

    async def release(self) -> None:
        self.open_connections = 0


async def build_memory_ca(issuer_id: str, config: Mapping[str, Any]) -> MemoryCA:
    """Connector factory: ``{"key_file", "chain_file", "key_password", "default_validity"}``.

    Raises ConfigError listing every problem.
    """
    return await _build(MemoryCA, issuer_id, config)


def _load_state(
    key_file: Path, chain_file: Path, password: Secret
) -> tuple[Any, list[x509.Certificate]]:
    key = serialization.load_pem_private_key(key_file.read_bytes(), password.reveal().encode())
    return key, x509.load_pem_x509_certificates(chain_file.read_bytes())


async def _build(cls: type[MemoryCA], issuer_id: str, config: Mapping[str, Any]) -> MemoryCA:
    problems: list[ConfigProblem] = []
    for name in ("key_file", "chain_file", "key_password"):
        if not isinstance(config.get(name), str) or not config.get(name):
            problems.append(ConfigProblem(name, "must be a non-empty string"))
    seconds = config.get("default_validity_seconds", DEFAULT_VALIDITY.total_seconds())
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
        problems.append(ConfigProblem("default_validity_seconds", "must be a positive number"))
    if problems:
        raise ConfigError(problems, issuer_id=issuer_id, connector=cls.connector_name)
    password = Secret(str(config["key_password"]))
    try:
        key, chain = await asyncio.to_thread(
            _load_state, Path(config["key_file"]), Path(config["chain_file"]), password
        )
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(
            [ConfigProblem("key_file", f"cannot load the CA key or chain ({type(exc).__name__})")],
            issuer_id=issuer_id,
            connector=cls.connector_name,
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or len(chain) != 2:
        raise ConfigError(
            [ConfigProblem("key_file", "expected an EC key and a two-certificate chain")],
            issuer_id=issuer_id,
            connector=cls.connector_name,
        )
    authority = Authority(root=chain[1], intermediate=chain[0], intermediate_key=key)
    return cls(
        issuer_id,
        authority=authority,
        password=password,
        default_validity=dt.timedelta(seconds=seconds),
    )


def write_state(directory: Path, password: str) -> tuple[dict[str, Any], x509.Certificate]:
    """Create a CA in ``directory``; returns the connector config and the root."""
    authority, _root_key = Authority.create()
    key_file = directory / "issuing-ca.key"
    chain_file = directory / "chain.pem"
    key_file.write_bytes(
        authority.intermediate_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password.encode()),
        )
    )
    chain_file.write_bytes(
        b"".join(
            c.public_bytes(serialization.Encoding.PEM)
            for c in (authority.intermediate, authority.root)
        )
    )
    config = {
        "key_file": str(key_file),
        "chain_file": str(chain_file),
        "key_password": password,
        "default_validity_seconds": DEFAULT_VALIDITY.total_seconds(),
    }
    return config, authority.root


#: The key password the harness configures; long and unique so a leak cannot hide.
HARNESS_PASSWORD = "memory-ca-password-7f3c9a1e5b2d4068"


@asynccontextmanager
async def harness_for(cls: type[MemoryCA], tmp_path: Path) -> AsyncIterator[LiveIssuer]:
    """A live ``cls`` issuer over a fresh CA in ``tmp_path``, closed on exit."""
    config, root = write_state(tmp_path, HARNESS_PASSWORD)
    issuer = await _build(cls, f"{cls.connector_name}-under-test", config)
    try:
        yield LiveIssuer(
            issuer=issuer,
            trust_anchors=(root,),
            secrets=(HARNESS_PASSWORD,),
            default_validity=DEFAULT_VALIDITY,
            open_connections=lambda: issuer.open_connections,
        )
    finally:
        await issuer.close()


def memory_harness(tmp_path: Path) -> AbstractAsyncContextManager[LiveIssuer]:
    """Harness factory for the reference adapter."""
    return harness_for(MemoryCA, tmp_path)


@hookimpl
def certctl_register_connectors(registrar: ConnectorRegistrar) -> None:
    registrar.add(
        ConnectorType(
            name="memory",
            factory=build_memory_ca,
            version="0",
            description="in-memory reference CA for the contract suite",
            capabilities=Capabilities(crl=True, ocsp=True, status=True),
        )
    )


@hookimpl
def certctl_register_harnesses(registrar: HarnessRegistrar) -> None:
    registrar.add("memory", memory_harness)
