"""Certificate signing requests for the contract suite, built with ``cryptography``.

The suite makes its own keys and CSRs so that it knows, independently of the adapter,
what a correct certificate must contain. Connector authors can reuse these helpers in
their own tests.
"""

from __future__ import annotations

from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from certctl_core.domain import SubjectAltNames

__all__ = ["KeyKind", "PrivateKey", "build_csr", "new_private_key", "with_broken_signature"]

KeyKind = Literal["ec-p256", "rsa-2048"]
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def new_private_key(kind: KeyKind = "ec-p256") -> PrivateKey:
    """A fresh private key of the given kind."""
    if kind == "rsa-2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def build_csr(
    sans: SubjectAltNames,
    *,
    common_name: str | None = None,
    key: PrivateKey | None = None,
) -> tuple[x509.CertificateSigningRequest, PrivateKey]:
    """A PKCS#10 request for ``sans`` (and ``common_name``), signed by ``key``.

    A new EC P-256 key is made when ``key`` is not given. Returns the CSR and its key.
    """
    key = key or new_private_key()
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else []
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attributes))
    if len(sans):
        builder = builder.add_extension(
            x509.SubjectAlternativeName(sans.to_general_names()), critical=False
        )
    return builder.sign(key, hashes.SHA256()), key


def with_broken_signature(csr: x509.CertificateSigningRequest) -> x509.CertificateSigningRequest:
    """The same CSR with one bit of its signature flipped: it parses, but does not verify."""
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    # The signature BIT STRING is the last field of the DER; its last byte is signature
    # material for every algorithm, so flipping it keeps the DER well-formed.
    der[-1] ^= 0x01
    return x509.load_der_x509_csr(bytes(der))
