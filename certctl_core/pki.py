"""CA certificates: the one builder certctl's CAs use, and the hash a key signs with.

For a connector that runs its own CA (as the Local CA does) and for test CAs:
:func:`build_ca_certificate` builds a root (self-signed) or an intermediate; :func:`signature_hash`
is the digest a key of each type signs certificates, CRLs and OCSP responses with.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificateIssuerPublicKeyTypes,
    CertificatePublicKeyTypes,
)

__all__ = ["SignatureHash", "build_ca_certificate", "signature_hash"]

SignatureHash = hashes.SHA256 | hashes.SHA384 | hashes.SHA512

#: The CA key usages: sign certificates and CRLs, and (OCSP, TLS) sign data.
_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def signature_hash(
    key: CertificateIssuerPrivateKeyTypes | CertificateIssuerPublicKeyTypes,
) -> SignatureHash | None:
    """The digest signatures by ``key`` use: SHA-384 for EC P-384, SHA-512 for EC P-521,
    None for Ed25519 and Ed448 (EdDSA signs the message itself), SHA-256 for the rest."""
    if isinstance(
        key,
        ed25519.Ed25519PrivateKey
        | ed25519.Ed25519PublicKey
        | ed448.Ed448PrivateKey
        | ed448.Ed448PublicKey,
    ):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if key.curve.name == "secp384r1":
            return hashes.SHA384()
        if key.curve.name == "secp521r1":
            return hashes.SHA512()
    return hashes.SHA256()


def build_ca_certificate(
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    *,
    signer_key: CertificateIssuerPrivateKeyTypes,
    issuer: x509.Certificate | None = None,
    not_before: dt.datetime,
    not_after: dt.datetime,
    path_length: int | None,
    serial: int | None = None,
) -> x509.Certificate:
    """A CA certificate for ``public_key``, signed by ``signer_key``.

    Without ``issuer`` it is a root: self-issued, and ``signer_key`` should be the
    private half of ``public_key``. With ``issuer`` (whose key ``signer_key`` is) it is
    an intermediate under that certificate. It carries critical BasicConstraints (CA,
    ``path_length``; None: unlimited), critical KeyUsage (keyCertSign, cRLSign,
    digitalSignature), the subject key identifier (SHA-1 of the key, RFC 5280 §4.2.1.2)
    and an authority key identifier: the issuer's subject key identifier, or for a root
    (or an issuer without one) the identifier of ``signer_key``. ``serial`` defaults to
    a random one; the digest is :func:`signature_hash` of ``signer_key``.
    """
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    if issuer is None:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key())
    else:
        try:
            issuer_ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        except x509.ExtensionNotFound:
            aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key())
        else:
            aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski.value)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer is None else issuer.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number() if serial is None else serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .add_extension(ski, critical=False)
        .add_extension(aki, critical=False)
        .sign(signer_key, signature_hash(signer_key))
    )
