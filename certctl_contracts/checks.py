"""Independent checks of what an adapter returned, done with ``cryptography`` alone.

The suite never asks the adapter whether its own output is right: chains are verified
with :mod:`cryptography.x509.verification` against the harness's trust anchors, CRLs
and OCSP responses are parsed and their signatures checked here. Every function fails
the running test (``pytest.fail``) with a message saying what is wrong.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Sequence

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from certctl_core.domain import IssuedCertificate, SubjectAltNames

__all__ = [
    "check_chain_order",
    "check_leaf_content",
    "check_serial_entropy",
    "crl_entry",
    "issuer_of",
    "ocsp_request_der",
    "ocsp_single_response",
    "stray_certificate",
    "verify_for_client",
    "verify_for_server",
]

#: A NotBefore up to this far ahead of our clock is tolerated when verifying.
_SKEW = dt.timedelta(minutes=1)


def _builder(issued: IssuedCertificate, anchors: Sequence[x509.Certificate]) -> PolicyBuilder:
    if not anchors:
        pytest.fail("the harness gave no trust anchors to verify the chain against")
    now = dt.datetime.now(dt.UTC)
    # Verify at "now", or at NotBefore when the CA's clock runs slightly ahead (the
    # NotBefore check itself is a separate test).
    at = max(now, min(issued.not_before, now + _SKEW))
    return PolicyBuilder().store(Store(list(anchors))).time(at)


def _name(cert_or_name: x509.Certificate | x509.Name) -> str:
    name = cert_or_name.subject if isinstance(cert_or_name, x509.Certificate) else cert_or_name
    return name.rfc4514_string() or "<empty subject>"


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def check_chain_order(chain: Sequence[x509.Certificate], root: x509.Certificate) -> None:
    """``chain`` is leaf (or first CA) first, each certificate signed by the next, the
    last one signed by ``root``, and ``root`` itself absent. Names a missing link."""
    if not chain:
        pytest.fail("the chain is empty")
    for cert in chain:
        if cert == root or cert.subject == cert.issuer:
            pytest.fail(
                f"the chain includes the root or a self-signed certificate ({_name(cert)}): "
                "chains end below the root; the relying party has the root"
            )
    for cert, parent in itertools.pairwise(chain):
        if cert.issuer != parent.subject:
            pytest.fail(
                f"the chain is out of order: {_name(cert)} is issued by {_name(cert.issuer)}, "
                f"but the next certificate is {_name(parent)}"
            )
        if not _signed_by(cert, parent):
            pytest.fail(f"{_name(cert)} is not signed by the next certificate, {_name(parent)}")
    last = chain[-1]
    if last.issuer != root.subject:
        pytest.fail(
            f"the chain ends at {_name(last)}, issued by {_name(last.issuer)}, not by the root "
            f"{_name(root)}: the intermediate {_name(last.issuer)} is missing"
        )
    if not _signed_by(last, root):
        pytest.fail(f"{_name(last)} is not signed by the root {_name(root)}")


def check_leaf_content(
    leaf: x509.Certificate,
    *,
    common_name: str | None,
    sans: SubjectAltNames,
    ekus: frozenset[x509.ObjectIdentifier],
    profile: str,
) -> None:
    """The leaf keeps the requested common name, has exactly ``sans``, exactly the
    ``ekus`` of ``profile`` and is not a CA."""
    cns = [a.value for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    want = [common_name] if common_name else []
    if cns != want:
        pytest.fail(f"the subject common name is {cns}, the CSR asked for {want}")
    got = SubjectAltNames.of(leaf)
    if not got.same_as(sans):
        pytest.fail(f"the subjectAltNames are {got}, the CSR asked for exactly {sans}")
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        usages = frozenset(eku)
    except x509.ExtensionNotFound:
        usages = frozenset()
    if usages != ekus:
        names = sorted(o._name for o in usages)
        pytest.fail(
            f"profile {profile!r} asks for extended key usages "
            f"{sorted(o._name for o in ekus)}, the leaf has {names}"
        )
    try:
        basic = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return
    if basic.ca:
        pytest.fail("the leaf has BasicConstraints CA:TRUE: the CA issued a CA certificate")


#: Bits of the serial that must vary over a run of serials (CA/B BR 7.1: 64 bits of
#: CSPRNG output).
ENTROPY_BITS = 64


def check_serial_entropy(serials: Sequence[int], bits: int = ENTROPY_BITS) -> None:
    """At least :data:`ENTROPY_BITS` bit positions take both values across ``serials``.

    With 24 random serials a truly random bit stays constant with probability 2**-23;
    a counter or a timestamp varies only in its low bits.
    """
    varying = 0
    width = max(s.bit_length() for s in serials)
    for bit in range(width):
        values = {(s >> bit) & 1 for s in serials}
        varying += len(values) == 2
    if varying < bits:
        pytest.fail(
            f"only {varying} bits vary across {len(serials)} serials "
            f"({[hex(s) for s in serials[:4]]}...): serials need at least {bits} "
            "bits from a CSPRNG, not a counter or a timestamp"
        )


def verify_for_server(
    issued: IssuedCertificate,
    anchors: Sequence[x509.Certificate],
    subject: x509.DNSName | x509.IPAddress,
) -> list[x509.Certificate]:
    """Verify leaf + chain to ``anchors`` as a TLS client would for ``subject``.

    Returns the verified path (leaf first, anchor last).
    """
    verifier = _builder(issued, anchors).build_server_verifier(subject)
    try:
        return verifier.verify(issued.certificate, list(issued.chain[1:]))
    except VerificationError as exc:
        pytest.fail(f"the chain does not verify to the trust anchors for {subject}: {exc}")


def verify_for_client(
    issued: IssuedCertificate, anchors: Sequence[x509.Certificate]
) -> tuple[list[x509.Certificate], list[x509.GeneralName]]:
    """Verify leaf + chain to ``anchors`` as a TLS server verifies a client certificate.

    Suits certificates whose names are emails or URIs. Returns the verified path and the
    leaf's subjectAltNames as the verifier saw them.
    """
    verifier = _builder(issued, anchors).build_client_verifier()
    try:
        verified = verifier.verify(issued.certificate, list(issued.chain[1:]))
    except VerificationError as exc:
        pytest.fail(f"the chain does not verify to the trust anchors (client policy): {exc}")
    return verified.chain, list(verified.subjects or [])


def issuer_of(
    cert_or_name: x509.Certificate | x509.Name, candidates: Iterable[x509.Certificate]
) -> x509.Certificate:
    """The candidate whose subject is the issuer of ``cert_or_name``; fails if none."""
    name = cert_or_name.issuer if isinstance(cert_or_name, x509.Certificate) else cert_or_name
    for candidate in candidates:
        if candidate.subject == name:
            return candidate
    pytest.fail(f"no certificate in the chain or trust anchors has subject {name.rfc4514_string()}")


def _verify_signature(
    signer: x509.Certificate,
    signature: bytes,
    data: bytes,
    algorithm: hashes.HashAlgorithm | None,
) -> bool:
    key = signer.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey) and algorithm is not None:
            key.verify(signature, data, ec.ECDSA(algorithm))
        elif isinstance(key, rsa.RSAPublicKey) and algorithm is not None:
            key.verify(signature, data, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(signature, data)
        else:
            pytest.fail(f"cannot check a signature by a {type(key).__name__}")
    except InvalidSignature:
        return False
    return True


def crl_entry(
    crl_der: bytes, serial: int, candidates: Iterable[x509.Certificate]
) -> x509.RevokedCertificate | None:
    """Parse a DER CRL, check its signature by its issuer among ``candidates``, and
    return the entry for ``serial`` (None when the serial is not listed)."""
    try:
        crl = x509.load_der_x509_crl(crl_der)
    except ValueError as exc:
        pytest.fail(f"crl() did not return a DER CRL: {exc}")
    signer = issuer_of(crl.issuer, candidates)
    if not crl.is_signature_valid(signer.public_key()):  # type: ignore[arg-type]
        pytest.fail(f"the CRL's signature does not verify with {signer.subject.rfc4514_string()}")
    return crl.get_revoked_certificate_by_serial_number(serial)


def ocsp_request_for_serial(issuer: x509.Certificate, serial: int) -> bytes:
    """A DER OCSP request about ``serial`` under ``issuer`` (no certificate needed)."""
    name_hash = hashes.Hash(hashes.SHA1())  # noqa: S303 - RFC 5019 CertIDs are SHA-1
    name_hash.update(issuer.subject.public_bytes())
    key_der = issuer.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    spki_key = _subject_public_key_bits(key_der)
    key_hash = hashes.Hash(hashes.SHA1())  # noqa: S303
    key_hash.update(spki_key)
    builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        name_hash.finalize(),
        key_hash.finalize(),
        serial,
        hashes.SHA1(),  # noqa: S303
    )
    return builder.build().public_bytes(serialization.Encoding.DER)


def _subject_public_key_bits(spki: bytes) -> bytes:
    """The BIT STRING contents (without the unused-bits octet) of a DER SPKI."""

    def header(data: bytes, at: int) -> tuple[int, int]:  # (content start, length)
        first = data[at + 1]
        if first < 0x80:
            return at + 2, first
        count = first & 0x7F
        return at + 2 + count, int.from_bytes(data[at + 2 : at + 2 + count], "big")

    start, _ = header(spki, 0)  # SEQUENCE
    alg_start, alg_len = header(spki, start)  # AlgorithmIdentifier
    bits_start, bits_len = header(spki, alg_start + alg_len)
    return spki[bits_start + 1 : bits_start + bits_len]


def ocsp_request_der(leaf: x509.Certificate, issuer: x509.Certificate) -> bytes:
    """A DER OCSP request for ``leaf`` (SHA-1 CertID, as RFC 5019 responders expect)."""
    builder = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1())  # noqa: S303
    return builder.build().public_bytes(serialization.Encoding.DER)


def ocsp_single_response(
    response_der: bytes, leaf: x509.Certificate, issuer: x509.Certificate
) -> ocsp.OCSPResponse:
    """Parse a DER OCSP response about ``leaf``, check it is successful, about ``leaf``'s
    serial and signed by ``issuer`` or a responder ``issuer`` delegated to."""
    try:
        response = ocsp.load_der_ocsp_response(response_der)
    except ValueError as exc:
        pytest.fail(f"ocsp() did not return a DER OCSP response: {exc}")
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        pytest.fail(f"the OCSP response status is {response.response_status.name}")
    if response.serial_number != leaf.serial_number:
        pytest.fail(f"the OCSP response is about serial {response.serial_number:#x}")
    signer = issuer
    if response.certificates:
        signer = response.certificates[0]
        if signer.subject != issuer.subject:
            try:
                signer.verify_directly_issued_by(issuer)
            except (ValueError, TypeError, InvalidSignature) as exc:
                pytest.fail(f"the OCSP responder certificate is not issued by the CA: {exc}")
            try:
                usages = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            except x509.ExtensionNotFound:
                usages = x509.ExtendedKeyUsage([])
            if ExtendedKeyUsageOID.OCSP_SIGNING not in usages:
                pytest.fail(
                    f"the OCSP responder certificate {_name(signer)} lacks id-kp-OCSPSigning "
                    "(RFC 6960 4.2.2.2): relying parties reject its answers"
                )
    if not _verify_signature(
        signer, response.signature, response.tbs_response_bytes, response.signature_hash_algorithm
    ):
        pytest.fail("the OCSP response's signature does not verify")
    return response


def stray_certificate(serial: int) -> x509.Certificate:
    """A self-signed throwaway certificate with ``serial``, for calls that need one (e.g.
    an undeclared ``renewal_info``); no CA under test issued it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stray.contract.test")])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(min(max(serial, 1), (1 << 159) - 1))
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
