"""A small DER writer: just the ASN.1 types a CRL and an OCSP response need.

Every function returns the complete encoding (tag, length, contents) of one value, so
encodings compose by concatenation. Only definite lengths and low tag numbers (< 31) are
produced, which is all X.509 needs. Inputs are checked; a bad input raises ValueError
(a programming error here, never a user's: callers pass values they built).
"""

from __future__ import annotations

import time

__all__ = [
    "bit_string",
    "boolean",
    "context",
    "encode_length",
    "enumerated",
    "generalized_time",
    "integer",
    "null",
    "object_identifier",
    "octet_string",
    "read_tlv",
    "sequence",
    "tlv",
    "x509_time",
]

#: Universal tag numbers used here (X.680 §8.4).
BOOLEAN = 0x01
INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
NULL = 0x05
OID = 0x06
ENUMERATED = 0x0A
UTC_TIME = 0x17
GENERALIZED_TIME = 0x18
SEQUENCE = 0x30  # constructed bit set

# RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050 on.
_UTC_TIME_LIMIT = 2524608000  # 2050-01-01T00:00:00Z
_UTC_TIME_FLOOR = -631152000  # 1950-01-01T00:00:00Z


def encode_length(length: int) -> bytes:
    """The DER length octets for ``length`` content octets (short or long form)."""
    if length < 0:
        raise ValueError("a length cannot be negative")
    if length < 0x80:
        return bytes((length,))
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(octets),)) + octets


def tlv(tag: int, content: bytes) -> bytes:
    """One value: identifier octet ``tag`` (class, constructed bit, number), length, content."""
    if not 0 <= tag <= 0xFF or tag & 0x1F == 0x1F:
        raise ValueError(f"tag {tag:#x} is not a single-octet identifier")
    return bytes((tag,)) + encode_length(len(content)) + content


def sequence(*parts: bytes) -> bytes:
    """SEQUENCE (or SEQUENCE OF) of already-encoded values."""
    return tlv(SEQUENCE, b"".join(parts))


def context(number: int, content: bytes, *, constructed: bool = True) -> bytes:
    """A context-specific tag ``[number]``.

    ``constructed=True`` is an EXPLICIT tag around an encoded value, or an IMPLICIT tag
    of a constructed type; ``constructed=False`` an IMPLICIT tag of a primitive type.
    """
    if not 0 <= number < 31:
        raise ValueError(f"context tag [{number}] needs the high-tag-number form")
    return tlv(0x80 | (0x20 if constructed else 0) | number, content)


def boolean(value: bool) -> bytes:
    return tlv(BOOLEAN, b"\xff" if value else b"\x00")


def integer(value: int) -> bytes:
    """INTEGER in minimal two's complement (a leading 0 octet keeps positives positive)."""
    if value >= 0:
        content = value.to_bytes(value.bit_length() // 8 + 1, "big")
    else:
        content = value.to_bytes((value + 1).bit_length() // 8 + 1, "big", signed=True)
    return tlv(INTEGER, content)


def enumerated(value: int) -> bytes:
    return b"\x0a" + integer(value)[1:]


def null() -> bytes:
    return b"\x05\x00"


def octet_string(content: bytes) -> bytes:
    return tlv(OCTET_STRING, content)


def bit_string(content: bytes) -> bytes:
    """BIT STRING of whole octets (no unused bits), as signatures and keys are."""
    return tlv(BIT_STRING, b"\x00" + content)


def object_identifier(dotted: str) -> bytes:
    """OBJECT IDENTIFIER from dotted-decimal text, e.g. ``"2.5.29.20"``."""
    try:
        arcs = [int(arc) for arc in dotted.split(".")]
    except ValueError:
        raise ValueError(f"{dotted!r} is not a dotted OID") from None
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] > 39) or min(arcs) < 0:
        raise ValueError(f"{dotted!r} is not a valid OID")
    out = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return tlv(OID, bytes(out))


def generalized_time(epoch: int) -> bytes:
    """GeneralizedTime ``YYYYMMDDHHMMSSZ`` (whole seconds, UTC) of a POSIX timestamp."""
    text = time.strftime("%Y%m%d%H%M%SZ", time.gmtime(epoch))
    return tlv(GENERALIZED_TIME, text.encode("ascii"))


def x509_time(epoch: int) -> bytes:
    """RFC 5280 ``Time``: UTCTime for 1950-2049, GeneralizedTime otherwise."""
    if _UTC_TIME_FLOOR <= epoch < _UTC_TIME_LIMIT:
        text = time.strftime("%y%m%d%H%M%SZ", time.gmtime(epoch))
        return b"\x17\x0d" + text.encode("ascii")
    return generalized_time(epoch)


def read_tlv(data: bytes, offset: int = 0) -> tuple[int, int, int]:
    """Read one DER header at ``offset``: (tag, content start, content end).

    Only single-octet tags and definite lengths; raises ValueError on anything else or
    when the value runs past the end of ``data``.
    """
    if offset + 2 > len(data):
        raise ValueError("truncated DER header")
    tag, first = data[offset], data[offset + 1]
    if tag & 0x1F == 0x1F:
        raise ValueError("high tag numbers are not supported")
    start = offset + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 8 or start + count > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[start : start + count], "big")
        start += count
    end = start + length
    if end > len(data):
        raise ValueError("DER value runs past the end of the data")
    return tag, start, end
