"""OCSP (RFC 6960): requests parsed by ``cryptography``, responses encoded by hand.

A response is the fixed parts (responder id, responder certificate) encoded once per
responder certificate, one SingleResponse, an optional nonce, and one ECDSA signature by
the delegated responder key. Encoding by hand keeps a response to a few tens of
microseconds; ``cryptography``'s OCSPResponseBuilder re-serialises the responder
certificate and re-checks everything on every call.
"""

from __future__ import annotations

import hashlib

import attrs
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp

from certctl_core import InvalidRequestError
from certctl_localca import _der
from certctl_localca._ledger import LedgerEntry
from certctl_localca._signer import Signer

__all__ = [
    "MAX_OCSP_REQUEST_BYTES",
    "UNAUTHORIZED",
    "OcspQuery",
    "OcspResponder",
    "parse_request",
]

#: Largest OCSP request accepted. One unsigned request is about 100 bytes; signed ones
#: with a certificate a few KiB.
MAX_OCSP_REQUEST_BYTES = 16 * 1024

#: hash name -> OID, for the CertID hash algorithms we answer for.
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

#: OCSPResponse with status unauthorized (6): the request names a CA we do not serve.
UNAUTHORIZED = _der.sequence(_der.enumerated(6))


@attrs.frozen
class OcspQuery:
    """The one certificate an OCSP request asks about."""

    serial: int
    hash_name: str
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    nonce: bytes | None


def parse_request(data: bytes) -> OcspQuery:
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
        query = OcspQuery(
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
class OcspResponder:
    """A delegated responder: its key and certificate, and the issuing CA it answers for."""

    signer: Signer = attrs.field(repr=False)
    certificate: x509.Certificate = attrs.field(repr=False)
    #: hash name -> (issuer name hash, issuer key hash) of the issuing CA.
    issuer: dict[str, tuple[bytes, bytes]] = attrs.field(repr=False)
    #: nextUpdate - thisUpdate of every response, in seconds.
    validity: int
    _responder_id: bytes = attrs.field(init=False, repr=False)
    _certs: bytes = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        # ResponderID byKey [2]: SHA-1 of the responder's subjectPublicKey (RFC 6960 §4.2.1).
        key_hash = hashlib.sha1(_subject_public_key_bits(self.certificate)).digest()  # noqa: S324
        object.__setattr__(self, "_responder_id", _der.context(2, _der.octet_string(key_hash)))
        cert_der = self.certificate.public_bytes(serialization.Encoding.DER)
        object.__setattr__(self, "_certs", _der.context(0, _der.sequence(cert_der)))

    @property
    def not_after(self) -> int:
        return int(self.certificate.not_valid_after_utc.timestamp())

    def serves(self, query: OcspQuery) -> bool:
        """Whether the query's CertID names our issuing CA."""
        expected = self.issuer.get(query.hash_name)
        return expected == (query.issuer_name_hash, query.issuer_key_hash)

    def respond(self, query: OcspQuery, entry: LedgerEntry | None, now: int) -> bytes:
        """A signed DER OCSPResponse: good, revoked or (never issued) unknown."""
        if not self.serves(query):
            return UNAUTHORIZED
        if entry is None:
            status = _UNKNOWN
        elif entry.revoked_at is None:
            status = _GOOD
        else:
            reason = entry.reason if entry.reason is not None else 0
            status = _der.context(
                1,
                _der.generalized_time(entry.revoked_at) + _der.context(0, _der.enumerated(reason)),
            )
        cert_id = _der.sequence(
            _ALGORITHM_IDS[query.hash_name],
            _der.octet_string(query.issuer_name_hash),
            _der.octet_string(query.issuer_key_hash),
            _der.integer(query.serial),
        )
        produced = _der.generalized_time(now)
        single = _der.sequence(
            cert_id,
            status,
            produced,
            _der.context(0, _der.generalized_time(now + self.validity)),
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
