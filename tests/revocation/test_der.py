"""The DER writer against X.690 examples and against parsers we did not write."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st

from certctl_core.revocation import der as _der


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        (0, "00"),
        (127, "7f"),
        (128, "8180"),
        (255, "81ff"),
        (256, "820100"),
        (65535, "82ffff"),
        (65536, "83010000"),
        (55_000_000, "8403473bc0"),
    ],
)
def test_length_uses_the_shortest_form_when_encoding(length: int, expected: str) -> None:
    assert _der.encode_length(length).hex() == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "020100"),
        (1, "020101"),
        (127, "02017f"),
        (128, "02020080"),
        (256, "02020100"),
        (-1, "0201ff"),
        (-128, "020180"),
        (-129, "0202ff7f"),
    ],
)
def test_integer_is_minimal_twos_complement_when_encoding(value: int, expected: str) -> None:
    assert _der.integer(value).hex() == expected


@given(st.integers(min_value=-(1 << 200), max_value=1 << 200))
def test_integer_round_trips_when_read_back(value: int) -> None:
    encoded = _der.integer(value)
    tag, start, end = _der.read_tlv(encoded)
    content = encoded[start:end]
    assert tag == _der.INTEGER and end == len(encoded)
    assert int.from_bytes(content, "big", signed=True) == value
    # minimal: the first nine bits are never all equal
    if len(content) > 1:
        assert not (content[0] == 0 and content[1] < 0x80)
        assert not (content[0] == 0xFF and content[1] >= 0x80)


@pytest.mark.parametrize(
    ("oid", "expected"),
    [
        ("1.2.840.113549", "06062a864886f70d"),  # X.690 §8.19.5 example's arc
        ("2.5.29.20", "0603551d14"),
        ("1.3.6.1.5.5.7.48.1.2", "06092b0601050507300102"),
        ("2.999.3", "0603883703"),  # X.690 example: first subidentifier 1079
    ],
)
def test_object_identifier_matches_x690_when_encoding(oid: str, expected: str) -> None:
    assert _der.object_identifier(oid).hex() == expected


@pytest.mark.parametrize("bad", ["1", "3.1", "1.40", "a.b", "1.-2"])
def test_object_identifier_rejects_input_when_not_an_oid(bad: str) -> None:
    with pytest.raises(ValueError, match="OID"):
        _der.object_identifier(bad)


def test_time_switches_to_generalized_when_year_is_2050_or_later() -> None:
    before = int(dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=dt.UTC).timestamp())
    after = before + 1
    assert _der.x509_time(before) == b"\x17\x0d491231235959Z"
    assert _der.x509_time(after) == b"\x18\x0f20500101000000Z"
    assert _der.generalized_time(before) == b"\x18\x0f20491231235959Z"


def test_context_tags_set_class_and_constructed_bits_when_encoding() -> None:
    assert _der.context(0, b"\x02\x01\x01") == b"\xa0\x03\x02\x01\x01"
    assert _der.context(2, b"", constructed=False) == b"\x82\x00"
    with pytest.raises(ValueError, match="high-tag"):
        _der.context(31, b"")


def test_read_tlv_rejects_input_when_truncated() -> None:
    with pytest.raises(ValueError, match="past the end"):
        _der.read_tlv(b"\x30\x05\x02\x01")
    with pytest.raises(ValueError, match="truncated"):
        _der.read_tlv(b"\x30")
    with pytest.raises(ValueError, match="bad DER length"):
        _der.read_tlv(b"\x30\x80")


@given(st.binary(max_size=70_000))
def test_octet_string_lengths_parse_when_read_back(content: bytes) -> None:
    encoded = _der.octet_string(content)
    tag, start, end = _der.read_tlv(encoded)
    assert (tag, encoded[start:end], end) == (_der.OCTET_STRING, content, len(encoded))


def test_extension_parses_with_cryptography_when_built_from_parts() -> None:
    # A whole Name built with our writer must be what cryptography itself produces.
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "x")])
    ours = _der.sequence(
        _der.tlv(0x31, _der.sequence(_der.object_identifier("2.5.4.3"), _der.tlv(0x0C, b"x")))
    )
    assert ours == name.public_bytes()
