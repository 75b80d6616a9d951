"""A throw-away two-tier PKI (root + intermediate) for a test step-ca, made with cryptography."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certctl_core.pki import build_ca_certificate

from ._files import write_private

__all__ = ["PKI", "generate_pki"]

_ROOT_CERT = "root_ca.crt"
_ROOT_KEY = "root_ca_key"
_INTERMEDIATE_CERT = "intermediate_ca.crt"
_INTERMEDIATE_KEY = "intermediate_ca_key"
_VALIDITY = dt.timedelta(days=3650)
_BACKDATE = dt.timedelta(minutes=5)


@attrs.frozen
class PKI:
    """A root and an intermediate CA on disk, with the loaded certificates and keys.

    Both keys are EC P-256 and written unencrypted (PKCS#8 PEM, mode 0600).
    """

    directory: Path
    root_cert_path: Path
    root_key_path: Path
    intermediate_cert_path: Path
    intermediate_key_path: Path
    root_cert: x509.Certificate = attrs.field(eq=False)
    root_key: ec.EllipticCurvePrivateKey = attrs.field(eq=False, repr=False)
    intermediate_cert: x509.Certificate = attrs.field(eq=False)
    intermediate_key: ec.EllipticCurvePrivateKey = attrs.field(eq=False, repr=False)

    @classmethod
    def load(cls, directory: Path) -> PKI:
        """Load a PKI previously written by :func:`generate_pki` into ``directory``.

        Raises:
            FileNotFoundError: a file is missing.
            TypeError: a key file does not hold an EC private key.
        """
        root_key = _load_ec_key(directory / _ROOT_KEY)
        intermediate_key = _load_ec_key(directory / _INTERMEDIATE_KEY)
        return cls(
            directory=directory,
            root_cert_path=directory / _ROOT_CERT,
            root_key_path=directory / _ROOT_KEY,
            intermediate_cert_path=directory / _INTERMEDIATE_CERT,
            intermediate_key_path=directory / _INTERMEDIATE_KEY,
            root_cert=x509.load_pem_x509_certificate((directory / _ROOT_CERT).read_bytes()),
            root_key=root_key,
            intermediate_cert=x509.load_pem_x509_certificate(
                (directory / _INTERMEDIATE_CERT).read_bytes()
            ),
            intermediate_key=intermediate_key,
        )

    @property
    def root_pem(self) -> bytes:
        """The root certificate, PEM."""
        return self.root_cert.public_bytes(serialization.Encoding.PEM)

    @property
    def intermediate_pem(self) -> bytes:
        """The intermediate certificate, PEM."""
        return self.intermediate_cert.public_bytes(serialization.Encoding.PEM)

    @property
    def root_fingerprint(self) -> str:
        """SHA-256 of the root certificate's DER, lower-case hex (step's fingerprint)."""
        return hashlib.sha256(self.root_cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def generate_pki(directory: Path, *, common_name_prefix: str = "certctl test") -> PKI:
    """Create a root CA (path length 1) and an intermediate CA (path length 0) in ``directory``.

    Writes ``root_ca.crt``, ``root_ca_key``, ``intermediate_ca.crt`` and ``intermediate_ca_key``
    (keys mode 0600). Both certificates are valid for ten years, backdated five minutes.
    """
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    intermediate_key = ec.generate_private_key(ec.SECP256R1())
    root_name = _name(f"{common_name_prefix} Root CA")
    intermediate_name = _name(f"{common_name_prefix} Intermediate CA")

    root_cert = build_ca_certificate(
        root_name,
        root_key.public_key(),
        signer_key=root_key,
        not_before=now - _BACKDATE,
        not_after=now + _VALIDITY,
        path_length=1,
    )
    intermediate_cert = build_ca_certificate(
        intermediate_name,
        intermediate_key.public_key(),
        signer_key=root_key,
        issuer=root_cert,
        not_before=now - _BACKDATE,
        not_after=now + _VALIDITY - dt.timedelta(days=1),
        path_length=0,
    )

    write_private(directory / _ROOT_CERT, root_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    write_private(directory / _ROOT_KEY, _key_pem(root_key), 0o600)
    write_private(
        directory / _INTERMEDIATE_CERT,
        intermediate_cert.public_bytes(serialization.Encoding.PEM),
        0o644,
    )
    write_private(directory / _INTERMEDIATE_KEY, _key_pem(intermediate_key), 0o600)
    return PKI(
        directory=directory,
        root_cert_path=directory / _ROOT_CERT,
        root_key_path=directory / _ROOT_KEY,
        intermediate_cert_path=directory / _INTERMEDIATE_CERT,
        intermediate_key_path=directory / _INTERMEDIATE_KEY,
        root_cert=root_cert,
        root_key=root_key,
        intermediate_cert=intermediate_cert,
        intermediate_key=intermediate_key,
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "certctl test"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_ec_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{path} does not hold an EC private key")
    return key
