"""Independent checks of what an adapter returned, done with ``cryptography`` alone.

The suite never asks the adapter whether its own output is right: chains are verified
with :mod:`cryptography.x509.verification` against the harness's trust anchors, CRLs
and OCSP responses are parsed and their signatures checked here. Every function fails
the running test (``pytest.fail``) with a message saying what is wrong.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from certctl_core.domain import IssuedCertificate

__all__ = [
    "crl_entry",
    "issuer_of",
    "ocsp_request_der",
    "ocsp_single_response",
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
    if not _verify_signature(
        signer, response.signature, response.tbs_response_bytes, response.signature_hash_algorithm
    ):
        pytest.fail("the OCSP response's signature does not verify")
    return response
