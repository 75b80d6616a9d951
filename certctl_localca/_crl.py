"""CRLs (RFC 5280 §5) encoded by hand, each revoked entry once.

Each revoked entry is DER-encoded once, when it is first seen, and appended to one
growing buffer; a new CRL is the fixed header, that buffer, the extensions, and one
signature over the TBSCertList bytes. ``cryptography``'s builder, given the whole entry
list at once, is linear too, but re-encodes every entry on every CRL: re-signing a
100,000-entry CRL after a revocation costs it about 25 times as much as here, and it
holds the GIL for most of that. See ADR/0019-crl-encoder-reconsidered.md (which replaces
the reason given in ADR 0010). tests/localca/test_crl.py holds the output byte for byte
to the builder's.
"""

from __future__ import annotations

import attrs

from certctl_core import RevocationReason
from certctl_core.revocation import Signer
from certctl_core.revocation import der as _der
from certctl_localca._ledger import RevokedRow

__all__ = ["CRLEncoder", "encode_revoked_entry"]

_OID_REASON_CODE = _der.object_identifier("2.5.29.21")
_OID_AKI = _der.object_identifier("2.5.29.35")
_OID_CRL_NUMBER = _der.object_identifier("2.5.29.20")
_VERSION_2 = _der.integer(1)


def _reason_extensions(reason: int) -> bytes:
    # RFC 5280 §5.3.1: the reasonCode "unspecified" SHOULD be absent.
    if reason == RevocationReason.UNSPECIFIED:
        return b""
    ext = _der.sequence(_OID_REASON_CODE, _der.octet_string(_der.enumerated(reason)))
    return _der.sequence(ext)


_REASON_EXTENSIONS = {int(r): _reason_extensions(r) for r in RevocationReason}


def encode_revoked_entry(serial: int, revoked_at: int, reason: int) -> bytes:
    """One ``revokedCertificates`` element: serial, revocationDate, reasonCode extension."""
    serial_octets = serial.to_bytes(serial.bit_length() // 8 + 1, "big")
    body = b"".join(
        (
            b"\x02",
            _der.encode_length(len(serial_octets)),
            serial_octets,
            _der.x509_time(revoked_at),
            _REASON_EXTENSIONS[reason],
        )
    )
    return b"\x30" + _der.encode_length(len(body)) + body


@attrs.define
class CRLEncoder:
    """The revoked entries seen so far, encoded, and the means to sign a CRL of them.

    ``issuer_der`` is the DER of the CA's subject Name, ``key_id`` its subject key
    identifier. Not thread-safe: one caller at a time (the connector holds a lock).
    """

    signer: Signer = attrs.field(repr=False)
    issuer_der: bytes = attrs.field(repr=False)
    key_id: bytes
    _entries: bytearray = attrs.field(factory=bytearray, repr=False)
    count: int = 0

    def add(self, serial: int, revoked_at: int, reason: int) -> None:
        """Append one revoked certificate (each serial once: the ledger guarantees it)."""
        self._entries += encode_revoked_entry(serial, revoked_at, reason)
        self.count += 1

    def add_many(self, rows: list[RevokedRow]) -> None:
        """Append (serial, revoked_at, reason, _) rows, as the ledger returns them."""
        encode = encode_revoked_entry
        self._entries += b"".join([encode(s, at, r) for s, at, r, _ in rows])
        self.count += len(rows)

    def tbs(self, number: int, this_update: int, next_update: int) -> bytes:
        """The DER TBSCertList for CRL ``number`` valid from ``this_update`` to
        ``next_update`` (POSIX seconds)."""
        aki = _der.sequence(_der.context(0, self.key_id, constructed=False))
        extensions = _der.context(
            0,
            _der.sequence(
                _der.sequence(_OID_AKI, _der.octet_string(aki)),
                _der.sequence(_OID_CRL_NUMBER, _der.octet_string(_der.integer(number))),
            ),
        )
        head = b"".join(
            (
                _VERSION_2,
                self.signer.algorithm_der,
                self.issuer_der,
                _der.x509_time(this_update),
                _der.x509_time(next_update),
            )
        )
        # RFC 5280 §5.1.2.6: an empty list is absent, not an empty SEQUENCE.
        revoked_head = b"\x30" + _der.encode_length(len(self._entries)) if self.count else b""
        size = len(head) + len(revoked_head) + len(self._entries) + len(extensions)
        parts: list[bytes | bytearray] = [b"\x30", _der.encode_length(size), head]
        parts += [revoked_head, self._entries, extensions]
        return b"".join(parts)

    def sign(self, number: int, this_update: int, next_update: int) -> bytes:
        """A complete DER CertificateList signed with the CA key."""
        tbs = self.tbs(number, this_update, next_update)
        signature = _der.bit_string(self.signer.sign(tbs))
        size = len(tbs) + len(self.signer.algorithm_der) + len(signature)
        return b"".join(
            (b"\x30", _der.encode_length(size), tbs, self.signer.algorithm_der, signature)
        )
