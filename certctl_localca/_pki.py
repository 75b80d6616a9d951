"""The CA's certificates and keys: created in, or loaded into, the state directory, and
the certificate builders for leaves and the OCSP responder.

Everything here is synchronous and CPU- or file-bound; the connector runs it in a
worker thread. Failures are ConfigError (the operator can fix them) or the CertctlError
a builder raises.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certctl_core import ConfigError, ConfigProblem, SubjectAltNames
from certctl_core.domain import public_key_der
from certctl_core.files import FileTooLargeError, read_regular_file
from certctl_core.pki import build_ca_certificate
from certctl_core.revocation import Signer, UnsupportedKeyError
from certctl_localca._config import (
    CA_NAME_SUFFIXES,
    EXTENDED_KEY_USAGES,
    LocalCAConfig,
    UsageProfile,
)
from certctl_localca._files import ensure_private_dir, write_private

if TYPE_CHECKING:
    from certctl_localca._pgledger import SharedLedger

__all__ = [
    "BACKDATE",
    "CAMaterial",
    "LeafSpec",
    "load_or_create_ca",
    "new_serial",
    "build_leaf",
    "build_responder",
]

log = logging.getLogger(__name__)

#: Certificates start this long before issuance, for clients whose clocks are behind.
BACKDATE = dt.timedelta(minutes=1)
ROOT_FILES = ("root.pem", "root.key")
INTERMEDIATE_FILES = ("intermediate.pem", "intermediate.key")
_ROOT_LIFETIME = dt.timedelta(days=3650)
_INTERMEDIATE_LIFETIME = dt.timedelta(days=1825)
#: Read bounds (ADR 0017): a CA bundle or key file is a few KiB.
MAX_CERT_FILE_BYTES = 1024 * 1024
MAX_KEY_FILE_BYTES = 256 * 1024
#: What follows ``ca_name`` in each subject (the config bounds the name by the longest).
_ROOT_SUFFIX, _INTERMEDIATE_SUFFIX, _RESPONDER_SUFFIX = CA_NAME_SUFFIXES


@attrs.frozen
class CAMaterial:
    """The issuing CA: its certificate and signer, and the chain up to the trust anchor."""

    certificate: x509.Certificate = attrs.field(repr=False)
    signer: Signer = attrs.field(repr=False)
    #: issuing CA first, trust anchor last (``ca_chain()``).
    chain: tuple[x509.Certificate, ...] = attrs.field(repr=False)

    @property
    def root(self) -> x509.Certificate:
        return self.chain[-1]

    @property
    def intermediates(self) -> tuple[x509.Certificate, ...]:
        """The chain without a self-signed anchor: what an issued chain carries."""
        last = self.chain[-1]
        return self.chain[:-1] if last.issuer == last.subject else self.chain

    @property
    def key_id(self) -> bytes:
        """The issuing CA's subject key identifier (what AKIs of its products name)."""
        try:
            ext = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        except x509.ExtensionNotFound:
            return x509.SubjectKeyIdentifier.from_public_key(self.certificate.public_key()).digest
        return ext.value.digest


def new_serial() -> int:
    """A random positive serial of 159 bits: at most 20 octets in DER (RFC 5280 §4.1.2.2)."""
    while True:
        serial = secrets.randbits(159)
        if serial >= 1 << 64:  # never short: keeps the entropy the RFC asks for
            return serial


def load_or_create_ca(config: LocalCAConfig) -> CAMaterial:
    """The configured CA, or the one in ``state_dir``, created on first use.

    Raises ConfigError for unreadable, undecryptable, mismatched or incomplete files.
    """
    try:
        ensure_private_dir(config.state_dir)
    except OSError as exc:
        raise _problem("state_dir", f"cannot be created: {exc.strerror}") from exc
    if config.ca_cert_file is not None and config.ca_key_file is not None:
        return _load(config, config.ca_cert_file, config.ca_key_file, "ca_cert_file")
    names = [*ROOT_FILES, *INTERMEDIATE_FILES]
    try:
        present = [n for n in names if (config.state_dir / n).exists()]
    except OSError as exc:
        raise _problem("state_dir", f"cannot be read: {exc.strerror}") from exc
    if not present:
        _create(config)
    elif len(present) != len(names):
        missing = sorted(set(names) - set(present))
        raise _problem(
            "state_dir",
            f"holds an incomplete CA: {', '.join(missing)} missing",
            "restore the files from a backup, or point state_dir at an empty directory",
        )
    intermediate = config.state_dir / INTERMEDIATE_FILES[0]
    material = _load(config, intermediate, config.state_dir / INTERMEDIATE_FILES[1], "state_dir")
    root = _read_certs(config.state_dir / ROOT_FILES[0], "state_dir")[0]
    return attrs.evolve(material, chain=(material.certificate, root))


def _problem(field: str, message: str, hint: str | None = None) -> ConfigError:
    return ConfigError([ConfigProblem(field, message, hint)], connector="localca")


def _read_file(path: Path, field: str, limit: int) -> bytes:
    """At most ``limit`` bytes of ``path`` (a bounded read: /dev/zero must not hang us)."""
    try:
        return read_regular_file(path, limit)
    except FileTooLargeError:
        raise _problem(field, f"{path} is larger than {limit} bytes", "check the path") from None
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "the path contains a NUL byte"
        raise _problem(field, f"{path} cannot be read: {reason}") from None


def _read_certs(path: Path, field: str) -> list[x509.Certificate]:
    data = _read_file(path, field, MAX_CERT_FILE_BYTES)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise _problem(field, f"{path} is not a PEM certificate bundle") from exc
    return certs


def _load(config: LocalCAConfig, cert_path: Path, key_path: Path, field: str) -> CAMaterial:
    certs = _read_certs(cert_path, field)
    key_field = "ca_key_file" if field == "ca_cert_file" else field
    key_data = _read_file(key_path, key_field, MAX_KEY_FILE_BYTES)
    return _material(config, certs, key_data, cert_path, key_path, field)


def _material(
    config: LocalCAConfig,
    certs: list[x509.Certificate],
    key_data: bytes,
    cert_path: Path | str,
    key_path: Path | str,
    field: str,
) -> CAMaterial:
    """The CA of ``certs`` (issuing CA first) and its encrypted PEM key, checked."""
    key_field = "ca_key_file" if field == "ca_cert_file" else field
    try:
        key = serialization.load_pem_private_key(
            key_data, config.key_password.reveal().encode("utf-8")
        )
    except TypeError as exc:  # the file is not encrypted
        raise _problem(
            key_field, f"{key_path} is not encrypted", "store the CA key as encrypted PKCS#8"
        ) from exc
    except UnsupportedAlgorithm as exc:  # a key type or cipher cryptography lacks
        raise _problem(
            key_field,
            f"{key_path} uses an unsupported key type or encryption",
            "store the CA key as PKCS#8 encrypted with AES (openssl pkcs8 -topk8 -v2 aes-256-cbc)",
        ) from exc
    except ValueError as exc:  # wrong password or not a key
        raise _problem(
            "key_password",
            f"does not decrypt {key_path} (or the file is not a PEM private key)",
        ) from exc
    try:
        signer = Signer.for_key(key)
    except UnsupportedKeyError as exc:
        raise _problem(key_field, f"unsupported CA key: {exc}") from exc
    issuing = certs[0]
    try:
        issuing_key = public_key_der(issuing.public_key())
        extensions = issuing.extensions
    except (ValueError, UnsupportedAlgorithm, x509.DuplicateExtension) as exc:
        raise _problem(
            field, f"the first certificate of {cert_path} cannot be used: {exc}"
        ) from exc
    if issuing_key != public_key_der(signer.key.public_key()):
        raise _problem(field, f"the first certificate of {cert_path} does not match the key")
    try:
        basic = extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        basic = None
    if basic is None or not basic.ca:
        raise _problem(field, f"the first certificate of {cert_path} is not a CA certificate")
    return CAMaterial(issuing, signer, tuple(certs))


def _private_pem(key: ec.EllipticCurvePrivateKey, config: LocalCAConfig) -> bytes:
    password = config.key_password.reveal().encode("utf-8")
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _create(config: LocalCAConfig) -> None:
    """Create a root and an intermediate (EC P-256) in ``state_dir``: keys first."""
    log.info("creating a new local CA in %s", config.state_dir)
    root, intermediate, root_key, inter_key = new_ca(config)
    state = config.state_dir
    try:
        write_private(state / ROOT_FILES[1], root_key)
        write_private(state / INTERMEDIATE_FILES[1], inter_key)
        write_private(state / ROOT_FILES[0], _cert_pem(root))
        write_private(state / INTERMEDIATE_FILES[0], _cert_pem(intermediate))
    except OSError as exc:
        raise _problem("state_dir", f"cannot write the CA files: {exc.strerror}") from exc


def new_ca(config: LocalCAConfig) -> tuple[x509.Certificate, x509.Certificate, bytes, bytes]:
    """A new root and intermediate (EC P-256): (root, intermediate, root key PEM,
    intermediate key PEM), the keys encrypted with ``key_password`` (PKCS#8)."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0) - BACKDATE
    root_key = ec.generate_private_key(ec.SECP256R1())
    inter_key = ec.generate_private_key(ec.SECP256R1())
    root_name = _name(config.ca_name + _ROOT_SUFFIX)
    inter_name = _name(config.ca_name + _INTERMEDIATE_SUFFIX)
    root = build_ca_certificate(
        root_name,
        root_key.public_key(),
        signer_key=root_key,
        not_before=now,
        not_after=now + _ROOT_LIFETIME,
        path_length=1,
        serial=new_serial(),
    )
    intermediate = build_ca_certificate(
        inter_name,
        inter_key.public_key(),
        signer_key=root_key,
        issuer=root,
        not_before=now,
        not_after=now + _INTERMEDIATE_LIFETIME,
        path_length=0,
        serial=new_serial(),
    )
    return root, intermediate, _private_pem(root_key, config), _private_pem(inter_key, config)


def load_or_propose_shared_ca(
    config: LocalCAConfig, ledger: SharedLedger
) -> tuple[CAMaterial, tuple[bytes, bytes, bytes] | None]:
    """The CA of a shared ledger (``ledger_url``) and, when none is stored yet, the one
    made here for it: (chain PEM, key PEM, root key PEM), to be stored at first use (see
    ``LocalCAIssuer._ensure_ca``). An operator's CA files (``ca_cert_file``/
    ``ca_key_file``) win, as without a ledger. Raises ConfigError, SharedLedgerError."""
    if config.ca_cert_file is not None and config.ca_key_file is not None:
        return _load(config, config.ca_cert_file, config.ca_key_file, "ca_cert_file"), None
    stored = ledger.find_ca()
    if stored is not None:
        return shared_ca(config, *stored), None
    root, intermediate, root_key, inter_key = new_ca(config)
    chain = _cert_pem(intermediate) + _cert_pem(root)
    return shared_ca(config, chain, inter_key), (chain, inter_key, root_key)


def shared_ca(config: LocalCAConfig, chain_pem: bytes, key_pem: bytes) -> CAMaterial:
    """The CA kept in a shared ledger (``ledger_url``): its chain (issuing CA first, root
    last) and the issuing CA's encrypted key. Raises ConfigError as for files."""
    try:
        certs = x509.load_pem_x509_certificates(chain_pem)
    except ValueError as exc:
        raise _problem("ledger_url", "the stored CA chain is not PEM") from exc
    return _material(config, certs, key_pem, "the shared ledger", "the shared ledger", "ledger_url")


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "certctl"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(profile: UsageProfile, subject_key: object) -> x509.KeyUsage:
    names = set(profile.key_usage or ("digitalSignature",))
    if profile.key_usage is None and isinstance(subject_key, rsa.RSAPublicKey):
        names.add("keyEncipherment")
    return x509.KeyUsage(
        digital_signature="digitalSignature" in names,
        content_commitment="contentCommitment" in names,
        key_encipherment="keyEncipherment" in names,
        data_encipherment="dataEncipherment" in names,
        key_agreement="keyAgreement" in names,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _base_builder(
    ca: CAMaterial,
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    serial: int,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.certificate.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier(ca.key_id, None, None),
            critical=False,
        )
    )


@attrs.frozen
class LeafSpec:
    """What goes into one leaf certificate besides the CA's own parts."""

    serial: int
    common_name: str | None
    sans: SubjectAltNames
    public_key: CertificatePublicKeyTypes = attrs.field(repr=False)
    profile: UsageProfile
    not_before: dt.datetime
    not_after: dt.datetime


def build_leaf(
    ca: CAMaterial, spec: LeafSpec, *, crl_url: str | None, ocsp_url: str | None
) -> x509.Certificate:
    """Sign a leaf (RFC 5280 profile): CA:false, key usages by profile, SANs, AKI/SKI,
    CRL distribution point and AIA OCSP when configured. The subject holds only the CN."""
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, spec.common_name)] if spec.common_name else []
    )
    builder = _base_builder(
        ca, subject, spec.public_key, spec.serial, spec.not_before, spec.not_after
    )
    builder = builder.add_extension(_key_usage(spec.profile, spec.public_key), critical=True)
    builder = builder.add_extension(
        x509.ExtendedKeyUsage([EXTENDED_KEY_USAGES[n] for n in spec.profile.extended_key_usage]),
        critical=False,
    )
    if len(spec.sans):
        # RFC 5280 §4.2.1.6: critical when the subject is empty.
        builder = builder.add_extension(
            x509.SubjectAlternativeName(spec.sans.to_general_names()),
            critical=not spec.common_name,
        )
    if crl_url:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(crl_url)], None, None, None)
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    if ocsp_url:
        access = x509.AccessDescription(
            x509.oid.AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url)
        )
        builder = builder.add_extension(x509.AuthorityInformationAccess([access]), critical=False)
    return builder.sign(ca.signer.key, ca.signer.hash_algorithm)


def build_responder(
    ca: CAMaterial,
    key: ec.EllipticCurvePrivateKey,
    serial: int,
    not_before: dt.datetime,
    not_after: dt.datetime,
    name: str,
) -> x509.Certificate:
    """Sign a delegated OCSP responder certificate (RFC 6960 §4.2.2.2): OCSPSigning EKU
    and id-pkix-ocsp-nocheck, so clients need not check the responder's own status."""
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    builder = _base_builder(
        ca, _name(name + _RESPONDER_SUFFIX), key.public_key(), serial, not_before, not_after
    )
    builder = (
        builder.add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
        .add_extension(x509.OCSPNoCheck(), critical=False)
    )
    return builder.sign(ca.signer.key, ca.signer.hash_algorithm)
