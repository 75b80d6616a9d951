"""certctl_core.pki: the one CA-certificate builder and the digest each key type signs with."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

import certctl_core
from certctl_core.pki import build_ca_certificate, signature_hash
from certctl_core.revocation import Signer

KEYS: dict[str, Callable[[], CertificateIssuerPrivateKeyTypes]] = {
    "p256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "p384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "p521": lambda: ec.generate_private_key(ec.SECP521R1()),
    "rsa2048": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "ed25519": ed25519.Ed25519PrivateKey.generate,
    "ed448": ed448.Ed448PrivateKey.generate,
}
EXPECTED_HASH: dict[str, type[hashes.HashAlgorithm] | None] = {
    "p256": hashes.SHA256,
    "p384": hashes.SHA384,
    "p521": hashes.SHA512,
    "rsa2048": hashes.SHA256,
    "ed25519": None,
    "ed448": None,
}
E = TypeVar("E", bound=x509.ExtensionType)
NOW = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _root(key: CertificateIssuerPrivateKeyTypes, path_length: int | None = 1) -> x509.Certificate:
    return build_ca_certificate(
        _name("Test Root"),
        key.public_key(),
        signer_key=key,
        not_before=NOW,
        not_after=NOW + dt.timedelta(days=10),
        path_length=path_length,
    )


def _ext(cert: x509.Certificate, kind: type[E]) -> x509.Extension[E]:
    return cert.extensions.get_extension_for_class(kind)


def _ski(cert: x509.Certificate) -> bytes:
    return _ext(cert, x509.SubjectKeyIdentifier).value.digest


def _aki(cert: x509.Certificate) -> bytes | None:
    return _ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_signature_hash_is_the_digest_of_each_key_type(kind: str) -> None:
    key = KEYS[kind]()
    expected = EXPECTED_HASH[kind]
    for either in (key, key.public_key()):
        found = signature_hash(either)
        if expected is None:
            assert found is None
        else:
            assert type(found) is expected


@pytest.mark.parametrize("kind", ["p256", "p384", "p521", "rsa2048", "ed25519"])
def test_signer_signs_with_the_same_digest(kind: str) -> None:
    key = KEYS[kind]()
    assert type(Signer.for_key(key).hash_algorithm) is type(signature_hash(key))


def test_signature_hash_defaults_to_sha256_for_other_curves() -> None:
    assert isinstance(signature_hash(ec.generate_private_key(ec.SECP256K1())), hashes.SHA256)


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_root_is_self_signed_with_ca_extensions(kind: str) -> None:
    key = KEYS[kind]()
    root = _root(key)
    root.verify_directly_issued_by(root)
    assert root.subject == root.issuer == _name("Test Root")
    assert root.not_valid_before_utc == NOW
    assert root.not_valid_after_utc == NOW + dt.timedelta(days=10)
    expected = EXPECTED_HASH[kind]
    algorithm = root.signature_hash_algorithm
    assert (algorithm is None) if expected is None else type(algorithm) is expected
    basic = _ext(root, x509.BasicConstraints)
    assert basic.critical
    assert basic.value == x509.BasicConstraints(ca=True, path_length=1)
    usage = _ext(root, x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign
    assert usage.value.crl_sign
    assert usage.value.digital_signature
    assert not usage.value.key_encipherment
    assert not usage.value.content_commitment
    assert not _ext(root, x509.SubjectKeyIdentifier).critical
    assert _ski(root) == x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest
    assert _aki(root) == _ski(root)
    assert root.serial_number > 0


@pytest.mark.parametrize(
    ("root_kind", "kind"),
    [(k, k) for k in sorted(KEYS)]
    + [
        ("p384", "ed25519"),
        ("rsa2048", "p256"),
        ("ed448", "p521"),
    ],
)
def test_intermediate_is_issued_by_its_root(root_kind: str, kind: str) -> None:
    root_key = KEYS[root_kind]()
    root = _root(root_key)
    key = KEYS[kind]()
    intermediate = build_ca_certificate(
        _name("Test Intermediate"),
        key.public_key(),
        signer_key=root_key,
        issuer=root,
        not_before=NOW,
        not_after=NOW + dt.timedelta(days=5),
        path_length=0,
        serial=12345,
    )
    intermediate.verify_directly_issued_by(root)
    assert intermediate.issuer == root.subject
    assert intermediate.subject == _name("Test Intermediate")
    assert intermediate.serial_number == 12345
    assert _ext(intermediate, x509.BasicConstraints).value.path_length == 0
    assert _ski(intermediate) == x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest
    assert _aki(intermediate) == _ski(root)
    expected = EXPECTED_HASH[root_kind]  # the issuer's key picks the digest
    algorithm = intermediate.signature_hash_algorithm
    assert (algorithm is None) if expected is None else type(algorithm) is expected


def test_path_length_none_is_unlimited() -> None:
    root = _root(KEYS["p256"](), path_length=None)
    assert _ext(root, x509.BasicConstraints).value == x509.BasicConstraints(
        ca=True, path_length=None
    )


def _operator_root(
    key: ec.EllipticCurvePrivateKey, ski: x509.SubjectKeyIdentifier | None
) -> x509.Certificate:
    """A root built elsewhere: with an SKI of its own choosing, or none."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name("Operator Root"))
        .issuer_name(_name("Operator Root"))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    if ski is not None:
        builder = builder.add_extension(ski, critical=False)
    return builder.sign(key, hashes.SHA256())


@pytest.mark.parametrize("custom", [True, False], ids=["own-ski", "no-ski"])
def test_authority_key_id_names_the_issuers_ski_else_the_signer_key(custom: bool) -> None:
    """An operator's CA may carry an SKI that is not the SHA-1 of its key (AKIs name
    it), or none (AKIs name the SHA-1 of the signer's key)."""
    root_key = ec.generate_private_key(ec.SECP256R1())
    ski = x509.SubjectKeyIdentifier(b"\x01" * 8) if custom else None
    root = _operator_root(root_key, ski)
    key = ec.generate_private_key(ec.SECP256R1())
    made = build_ca_certificate(
        _name("Sub"),
        key.public_key(),
        signer_key=root_key,
        issuer=root,
        not_before=NOW,
        not_after=NOW + dt.timedelta(hours=1),
        path_length=0,
    )
    made.verify_directly_issued_by(root)
    fallback = x509.SubjectKeyIdentifier.from_public_key(root_key.public_key())
    assert _aki(made) == (ski or fallback).digest


def test_exported_from_the_top_level() -> None:
    assert certctl_core.build_ca_certificate is build_ca_certificate
    assert certctl_core.signature_hash is signature_hash
