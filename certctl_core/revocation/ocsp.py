"""OCSP (RFC 6960) for certctl: requests parsed by ``cryptography``, responses encoded by hand.

Two levels:

* :class:`OCSPSigner` turns one parsed query and a status into a signed DER
  ``OCSPResponse``. The fixed parts (responder id, responder certificate) are encoded
  once; a response costs one SingleResponse, an optional nonce and one signature, a few
  tens of microseconds (``cryptography``'s OCSPResponseBuilder re-serialises the
  responder certificate and re-checks everything on every call, about twice as slow).
* :class:`OCSPResponder` is what a host serves: bytes in, bytes out, never an exception
  for a client's bad request. It checks, once, that its certificate may answer for the
  issuing CA (RFC 6960 §4.2.2.2: issued by that CA, with the OCSPSigning EKU).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from certctl_core.domain import CertificateStatus
from certctl_core.errors import CertctlError, InvalidRequestError, InvalidResponseError
from certctl_core.revocation import der as _der
from certctl_core.revocation.signer import Signer, UnsupportedKeyError

__all__ = [
    "MAX_OCSP_REQUEST_BYTES",
    "OCSPResponder",
    "OCSPErrorStatus",
    "OCSPQuery",
    "OCSPSigner",
    "build_ocsp_request",
    "issuer_hashes",
    "ocsp_error_response",
    "parse_ocsp_request",
]

log = logging.getLogger(__name__)

#: Largest OCSP request accepted. One unsigned request is about 100 bytes; a signed one
#: carrying the requestor's certificate a few KiB.
MAX_OCSP_REQUEST_BYTES = 16 * 1024

#: hash name -> OID, for the CertID hash algorithms answered for.
_HASH_OIDS = {
    "sha1": "1.3.14.3.2.26",
    "sha256": "2.16.840.1.101.3.4.2.1",
    "sha384": "2.16.840.1.101.3.4.2.2",
    "sha512": "2.16.840.1.101.3.4.2.3",
}
_ALGORITHM_IDS = {
    name: _der.sequence(_der.object_identifier(oid), _der.null())
    for name, oid in _HASH_OIDS.items()
}
_OID_BASIC = _der.object_identifier("1.3.6.1.5.5.7.48.1.1")
_OID_NONCE = _der.object_identifier("1.3.6.1.5.5.7.48.1.2")
_GOOD = b"\x80\x00"
_UNKNOWN = b"\x82\x00"

#: RFC 6960 §4.2.1 OCSPResponseStatus values that carry no response body.
OCSPErrorStatus = Literal["malformed_request", "internal_error", "try_later", "unauthorized"]
_ERROR_CODES: dict[str, int] = {
    "malformed_request": 1,
    "internal_error": 2,
    "try_later": 3,
    "unauthorized": 6,
}


def ocsp_error_response(status: OCSPErrorStatus) -> bytes:
    """An unsigned OCSPResponse with an error status (and, per RFC 6960, no body)."""
    return _der.sequence(_der.enumerated(_ERROR_CODES[status]))


@attrs.frozen
class OCSPQuery:
    """The one certificate an OCSP request asks about."""

    serial: int
    hash_name: str
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    nonce: bytes | None


def parse_ocsp_request(data: bytes) -> OCSPQuery:
    """Parse a DER OCSPRequest for one certificate.

    Raises InvalidRequestError for oversized, malformed or multi-certificate requests
    and for CertID hash algorithms other than SHA-1/256/384/512.
    """
    if len(data) > MAX_OCSP_REQUEST_BYTES:
        raise InvalidRequestError(
            f"OCSP request is {len(data)} bytes, more than the {MAX_OCSP_REQUEST_BYTES} accepted"
        )
    try:
        request = ocsp.load_der_ocsp_request(data)
        hash_name = request.hash_algorithm.name
        nonce = None
        for ext in request.extensions:
            if isinstance(ext.value, x509.OCSPNonce):
                nonce = ext.value.nonce
        query = OCSPQuery(
            request.serial_number,
            hash_name,
            request.issuer_name_hash,
            request.issuer_key_hash,
            nonce,
        )
    except NotImplementedError as exc:  # cryptography: more than one Request
        raise InvalidRequestError(
            "the OCSP request asks about more than one certificate",
            hint="send one request per certificate",
        ) from exc
    except (ValueError, UnsupportedAlgorithm, x509.DuplicateExtension) as exc:
        raise InvalidRequestError(
            "the OCSP request is not a valid DER OCSPRequest",
            hint="send a DER-encoded RFC 6960 OCSPRequest",
        ) from exc
    if hash_name not in _HASH_OIDS:
        raise InvalidRequestError(f"unsupported CertID hash algorithm {hash_name}")
    return query


def build_ocsp_request(
    issuer_cert: x509.Certificate, serial: int, *, nonce: bytes | None = None
) -> bytes:
    """A DER OCSPRequest (SHA-1 CertID, as every client sends) for ``serial`` of ``issuer_cert``."""
    name_hash, key_hash = issuer_hashes(issuer_cert)["sha1"]
    builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        name_hash,
        key_hash,
        serial,
        hashes.SHA1(),  # noqa: S303 (RFC 5019 CertIDs are SHA-1)
    )
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def _subject_public_key_bits(cert: x509.Certificate) -> bytes:
    """The subjectPublicKey BIT STRING contents (without the unused-bits octet)."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _, start, _ = _der.read_tlv(spki)
    _, _, algorithm_end = _der.read_tlv(spki, start)
    tag, bits_start, bits_end = _der.read_tlv(spki, algorithm_end)
    if tag != _der.BIT_STRING:
        raise ValueError("SubjectPublicKeyInfo without a BIT STRING")
    return spki[bits_start + 1 : bits_end]


def issuer_hashes(cert: x509.Certificate) -> dict[str, tuple[bytes, bytes]]:
    """hash name -> (issuer name hash, issuer key hash) of CertIDs naming ``cert``."""
    name = cert.subject.public_bytes()
    key = _subject_public_key_bits(cert)
    return {h: (hashlib.new(h, name).digest(), hashlib.new(h, key).digest()) for h in _HASH_OIDS}


@attrs.frozen
class OCSPSigner:
    """Signs OCSP responses: a responder key and certificate, and the CA it answers for."""

    signer: Signer = attrs.field(repr=False)
    certificate: x509.Certificate = attrs.field(repr=False)
    #: hash name -> (issuer name hash, issuer key hash) of the issuing CA.
    issuer: dict[str, tuple[bytes, bytes]] = attrs.field(repr=False)
    #: nextUpdate - thisUpdate of every response, in seconds.
    validity: int
    _responder_id: bytes = attrs.field(init=False, repr=False)
    _certs: bytes = attrs.field(init=False, repr=False)
    _not_after: int = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(
            self, "_not_after", int(self.certificate.not_valid_after_utc.timestamp())
        )
        # ResponderID byKey [2]: SHA-1 of the responder's subjectPublicKey (RFC 6960 §4.2.1).
        key_hash = hashlib.sha1(_subject_public_key_bits(self.certificate)).digest()  # noqa: S324
        object.__setattr__(self, "_responder_id", _der.context(2, _der.octet_string(key_hash)))
        cert_der = self.certificate.public_bytes(serialization.Encoding.DER)
        object.__setattr__(self, "_certs", _der.context(0, _der.sequence(cert_der)))

    @property
    def not_after(self) -> int:
        return self._not_after

    def serves(self, query: OCSPQuery) -> bool:
        """Whether the query's CertID names our issuing CA."""
        expected = self.issuer.get(query.hash_name)
        return expected == (query.issuer_name_hash, query.issuer_key_hash)

    def respond(
        self,
        query: OCSPQuery,
        now: int,
        *,
        known: bool,
        revoked_at: int | None = None,
        reason: int | None = None,
    ) -> bytes:
        """A signed DER OCSPResponse: good, revoked (``revoked_at`` set) or unknown.

        ``known`` is false for a serial the CA never issued (status unknown).
        """
        if not self.serves(query):
            return ocsp_error_response("unauthorized")
        if not known:
            status = _UNKNOWN
        elif revoked_at is None:
            status = _GOOD
        else:
            reason_der = b"" if reason is None else _der.context(0, _der.enumerated(reason))
            status = _der.context(1, _der.generalized_time(revoked_at) + reason_der)
        cert_id = _der.sequence(
            _ALGORITHM_IDS[query.hash_name],
            _der.octet_string(query.issuer_name_hash),
            _der.octet_string(query.issuer_key_hash),
            _der.integer(query.serial),
        )
        produced = _der.generalized_time(now)
        # A response must not outlive the certificate that signed it.
        next_update = min(now + self.validity, self._not_after)
        single = _der.sequence(
            cert_id,
            status,
            produced,
            _der.context(0, _der.generalized_time(next_update)),
        )
        extensions = b""
        if query.nonce is not None:
            nonce = _der.sequence(_OID_NONCE, _der.octet_string(_der.octet_string(query.nonce)))
            extensions = _der.context(1, _der.sequence(nonce))
        tbs = _der.sequence(self._responder_id, produced, _der.sequence(single), extensions)
        basic = _der.sequence(
            tbs,
            self.signer.algorithm_der,
            _der.bit_string(self.signer.sign(tbs)),
            self._certs,
        )
        return _der.sequence(
            _der.enumerated(0),
            _der.context(0, _der.sequence(_OID_BASIC, _der.octet_string(basic))),
        )


#: ``lookup(serial)``: what the ledger knows about a serial of this issuer.
StatusLookup = Callable[[int], Awaitable[CertificateStatus]]


def _check_delegation(
    issuer_cert: x509.Certificate,
    responder_cert: x509.Certificate,
    responder_key: CertificateIssuerPrivateKeyTypes,
) -> None:
    """RFC 6960 §4.2.2.2: the responder certificate is issued by the CA, for OCSP signing."""
    problems: list[str] = []
    try:
        responder_cert.verify_directly_issued_by(issuer_cert)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        problems.append("it is not signed by the issuing CA")
    try:
        usages = responder_cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.OCSP_SIGNING not in usages:
            problems.append("its extended key usage lacks OCSPSigning")
    except x509.ExtensionNotFound:
        problems.append("it has no extended key usage (OCSPSigning is required)")
    ours = responder_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    theirs = responder_cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if ours != theirs:
        problems.append("its public key is not the responder's key")
    if problems:
        raise InvalidResponseError(
            "the OCSP responder certificate cannot answer for "
            f"{issuer_cert.subject.rfc4514_string()}: " + "; ".join(problems),
            hint="issue it from the same intermediate, through a provisioner whose x509 "
            'template sets "extKeyUsage": ["ocspSigning"] (see docs/server.md)',
        )


class OCSPResponder:
    """Answers OCSP requests for one issuing CA with a delegated responder certificate.

    ``respond`` never raises for what a client sends: a malformed request gets
    ``malformedRequest``, a CertID of another CA ``unauthorized``, a failing ledger
    ``tryLater``. Nonces are echoed; every response carries thisUpdate and nextUpdate,
    which never lies beyond the responder certificate's notAfter.
    """

    def __init__(
        self,
        issuer_cert: x509.Certificate,
        responder_cert: x509.Certificate,
        responder_key: CertificateIssuerPrivateKeyTypes,
        *,
        validity: dt.timedelta = dt.timedelta(hours=1),
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Raises InvalidResponseError if the certificate may not answer for the CA."""
        _check_delegation(issuer_cert, responder_cert, responder_key)
        try:
            signer = Signer.for_key(responder_key)
        except UnsupportedKeyError as exc:
            raise InvalidRequestError(f"cannot sign OCSP responses with a {exc} key") from None
        self._signer = OCSPSigner(
            signer, responder_cert, issuer_hashes(issuer_cert), int(validity.total_seconds())
        )
        self._clock = clock
        self.issuer_cert = issuer_cert
        self.certificate = responder_cert

    def __repr__(self) -> str:
        return f"OCSPResponder(issuer={self.issuer_cert.subject.rfc4514_string()!r})"

    @property
    def not_after(self) -> dt.datetime:
        return self.certificate.not_valid_after_utc

    def serves(self, query: OCSPQuery) -> bool:
        return self._signer.serves(query)

    async def respond(self, request_der: bytes, lookup: StatusLookup) -> bytes:
        """A DER OCSPResponse for ``request_der``; never raises for bad input."""
        try:
            query = parse_ocsp_request(request_der)
        except InvalidRequestError:
            return ocsp_error_response("malformed_request")
        if not self._signer.serves(query):
            return ocsp_error_response("unauthorized")
        try:
            status = await lookup(query.serial)
        except CertctlError as exc:
            log.warning("OCSP: status lookup failed: %s", exc.message)
            return ocsp_error_response("try_later")
        return self.respond_to(query, status)

    def respond_to(self, query: OCSPQuery, status: CertificateStatus) -> bytes:
        """A signed response stating ``status`` for a query this responder serves."""
        now = int(self._clock())
        revoked_at = None
        if status.state == "revoked":
            # A ledger that lost the time still must state one (RFC 6960 revocationTime).
            revoked_at = int(status.revoked_at.timestamp()) if status.revoked_at else now
        return self._signer.respond(
            query,
            now,
            known=status.state != "unknown",
            revoked_at=revoked_at,
            reason=int(status.reason) if status.reason is not None else None,
        )
