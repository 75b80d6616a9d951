"""Domain values: parsing, masking, requests, issued certificates, error messages."""

from __future__ import annotations

import datetime as dt
import ipaddress

import attrs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from certctl_contracts.reference import ReferenceCA
from certctl_core import (
    Capabilities,
    CertctlError,
    CertificateRequest,
    ConfigError,
    ConfigProblem,
    HealthCheck,
    HealthReport,
    InvalidRequestError,
    InvalidResponseError,
    IssuedCertificate,
    Profile,
    RejectedError,
    RevocationReason,
    Secret,
    SubjectAltNames,
    parse_serial,
)
from certctl_core.domain import MAX_CSR_BYTES, MAX_SANS, MAX_SERIAL, format_serial_hex
from tests.core.fakes import make_csr, tampered_csr_der

# -- RevocationReason ------------------------------------------------------------------

ALL_REASONS = list(RevocationReason)


@pytest.mark.parametrize("reason", ALL_REASONS)
def test_reason_is_found_when_given_as_code_or_any_spelling(reason: RevocationReason) -> None:
    snake = reason.name.lower()
    spellings: list[str | int] = [
        reason.value,
        str(reason.value),
        f" {reason.value} ",
        reason.rfc_name,
        reason.rfc_name.upper(),
        snake,
        snake.replace("_", "-"),
        reason.name,
    ]
    assert [RevocationReason.parse(s) for s in spellings] == [reason] * len(spellings)


RFC_5280_NAMES = {
    0: "unspecified",
    1: "keyCompromise",
    2: "cACompromise",
    3: "affiliationChanged",
    4: "superseded",
    5: "cessationOfOperation",
    6: "certificateHold",
    8: "removeFromCRL",
    9: "privilegeWithdrawn",
    10: "aACompromise",
}


def test_reason_is_found_when_given_the_exact_rfc_5280_name() -> None:
    parsed = {RevocationReason.parse(name).value: name for name in RFC_5280_NAMES.values()}

    assert parsed == RFC_5280_NAMES


def test_rfc_name_is_the_rfc_5280_spelling_when_asked() -> None:
    # RFC 5280 section 5.3.1 spells three reasons with capitals inside: cACompromise,
    # removeFromCRL, aACompromise.
    assert {r.value: r.rfc_name for r in ALL_REASONS} == RFC_5280_NAMES


def test_every_reason_maps_to_its_x509_flag() -> None:
    assert {r.x509_flag for r in ALL_REASONS} == set(x509.ReasonFlags)
    assert RevocationReason.KEY_COMPROMISE.x509_flag is x509.ReasonFlags.key_compromise


@pytest.mark.parametrize("value", [7, "7", 11, "11", -1, "-1", "", "garbage", "key", "0x1"])
def test_reason_is_rejected_when_code_is_unused_or_text_is_unknown(value: str | int) -> None:
    with pytest.raises(InvalidRequestError) as info:
        RevocationReason.parse(value)
    assert info.value.hint is not None
    assert "keyCompromise (1)" in info.value.hint


@settings(database=None)
@given(st.one_of(st.text(), st.integers(), st.text(alphabet="0123456789 -_abcdefkyAZ")))
def test_reason_parse_raises_only_invalid_request_when_input_is_arbitrary(
    value: str | int,
) -> None:
    try:
        result = RevocationReason.parse(value)
    except InvalidRequestError:
        return
    assert isinstance(result, RevocationReason)


# -- serial numbers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12345", 12345),
        (" 42 ", 42),
        ("0x1F", 31),
        ("0X1f", 31),
        ("1f:2e", 0x1F2E),
        ("01:00", 256),
        ("10", 10),  # bare digits are decimal, never hex
        (7, 7),
        (MAX_SERIAL, MAX_SERIAL),
        ("0x" + "7f" + "ff" * 19, MAX_SERIAL),
    ],
)
def test_serial_is_parsed_when_decimal_or_hex(text: str | int, expected: int) -> None:
    assert parse_serial(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        0,
        "0",
        "0x0",
        "00:00",
        -1,
        "-1",
        "0x-1",
        MAX_SERIAL + 1,
        "0x" + "ff" * 20,
        ":".join(["ff"] * 21),
        str(MAX_SERIAL + 1),
        "",
        " ",
        "garbage",
        "12ab",
        "0x",
        "0xzz",
        ":",
        "1" * 200,
        True,
    ],
)
def test_serial_is_rejected_when_not_positive_20_octets_or_garbage(text: str | int) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_serial(text)
    assert info.value.hint is not None


@settings(database=None)
@given(st.one_of(st.text(), st.text(alphabet="0123456789abcdefxX: -"), st.integers()))
def test_parse_serial_raises_only_invalid_request_when_input_is_arbitrary(
    value: str | int,
) -> None:
    try:
        result = parse_serial(value)
    except InvalidRequestError:
        return
    assert 0 < result <= MAX_SERIAL


@settings(database=None)
@given(st.integers(min_value=1, max_value=MAX_SERIAL))
def test_serial_round_trips_when_formatted_as_hex_colon_or_decimal(serial: int) -> None:
    digits = format_serial_hex(serial)
    assert len(digits) % 2 == 0
    assert digits == digits.lower()
    assert int(digits, 16) == serial
    colon = ":".join(digits[i : i + 2] for i in range(0, len(digits), 2))
    assert parse_serial("0x" + digits) == serial
    assert parse_serial(colon if ":" in colon else colon + ":") == serial
    assert parse_serial(str(serial)) == serial


@pytest.mark.parametrize(
    ("serial", "expected"), [(1, "01"), (0xABC, "0abc"), (0x1234, "1234"), (255, "ff")]
)
def test_serial_hex_has_even_digits_when_formatted(serial: int, expected: str) -> None:
    assert format_serial_hex(serial) == expected


# -- Secret ----------------------------------------------------------------------------


def test_secret_is_masked_when_shown_in_any_way() -> None:
    secret = Secret("hunter2-password")

    shown = [
        repr(secret),
        str(secret),
        f"{secret}",
        f"{secret!r}",
        f"{secret!s}",
        format(secret, ""),
        "%s %r" % (secret, secret),  # noqa: UP031 - the old formatting path too
        repr([secret]),
        repr({"password": secret}),
    ]

    assert all("hunter2" not in text for text in shown)
    assert all("****" in text for text in shown)
    assert secret.reveal() == "hunter2-password"
    assert bool(secret)
    assert not Secret("")


def test_secret_is_masked_when_inside_an_attrs_value() -> None:
    @attrs.frozen
    class Settings:
        url: str
        password: Secret

    text = repr(Settings("https://ca", Secret("hunter2")))

    assert "hunter2" not in text
    assert "https://ca" in text


# -- Profile ---------------------------------------------------------------------------


def test_profile_is_built_when_mapping_is_valid() -> None:
    assert Profile.from_mapping({}) == Profile(name="default", max_ttl=None)
    assert Profile.from_mapping({"name": "web", "max_ttl_seconds": 3600}) == Profile(
        name="web", max_ttl=dt.timedelta(hours=1)
    )
    assert Profile.from_mapping({"max_ttl_seconds": 1.5}).max_ttl == dt.timedelta(seconds=1.5)


@pytest.mark.parametrize(
    "data",
    [
        {"name": ""},
        {"name": 5},
        {"max_ttl_seconds": 0},
        {"max_ttl_seconds": -10},
        {"max_ttl_seconds": True},
        {"max_ttl_seconds": "3600"},
    ],
)
def test_profile_is_rejected_when_mapping_is_invalid(data: dict[str, object]) -> None:
    with pytest.raises(InvalidRequestError):
        Profile.from_mapping(data)


@pytest.mark.parametrize("seconds", [float("inf"), float("nan"), 10**20, 1e300])
def test_profile_is_rejected_when_max_ttl_seconds_is_not_finite_or_too_large(
    seconds: float,
) -> None:
    # YAML ".inf" and JSON "1e400" both load as float("inf"); the domain promises
    # InvalidRequestError for bad input, never ValueError or OverflowError.
    with pytest.raises(InvalidRequestError):
        Profile.from_mapping({"name": "p", "max_ttl_seconds": seconds})


def test_profile_is_rejected_when_max_ttl_is_not_positive() -> None:
    with pytest.raises(InvalidRequestError, match="max_ttl"):
        Profile(name="p", max_ttl=dt.timedelta(0))


# -- CertificateRequest ----------------------------------------------------------------


def test_request_is_parsed_when_given_pem_text_pem_bytes_or_der() -> None:
    csr = make_csr(common_name="web.example.test", dns=("web.example.test", "www.example.test"))
    pem = csr.public_bytes(serialization.Encoding.PEM)
    der = csr.public_bytes(serialization.Encoding.DER)

    requests = [
        CertificateRequest.from_pem(pem),
        CertificateRequest.from_pem(pem.decode()),
        CertificateRequest.from_pem(b"\n  " + pem),
        CertificateRequest.from_der(der),
        CertificateRequest.from_pem(der),
    ]

    for request in requests:
        assert request.csr == csr
        assert request.common_name == "web.example.test"
        assert request.sans.dns == ("web.example.test", "www.example.test")
        assert request.profile == Profile()
        assert request.validity is None
        assert request.csr_pem == pem.decode()


def test_request_keeps_profile_and_validity_when_given() -> None:
    profile = Profile(name="p", max_ttl=dt.timedelta(hours=2))
    pem = make_csr().public_bytes(serialization.Encoding.PEM)

    request = CertificateRequest.from_pem(pem, profile=profile, validity=dt.timedelta(hours=1))

    assert (request.profile, request.validity) == (profile, dt.timedelta(hours=1))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"\x30\x03\x02\x01\x01",
        b"-----BEGIN CERTIFICATE REQUEST-----\nbm9wZQ==\n-----END CERTIFICATE REQUEST-----\n",
        "not a csr at all",
    ],
)
def test_request_is_rejected_when_bytes_are_not_a_csr(data: bytes | str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        CertificateRequest.from_pem(data)
    assert info.value.hint is not None
    assert "PEM" in info.value.hint


def test_request_is_rejected_when_text_holds_a_lone_surrogate() -> None:
    # json.loads('"\\ud800"') yields exactly such a str, so an API body can carry one.
    with pytest.raises(InvalidRequestError):
        CertificateRequest.from_pem("-----BEGIN CERTIFICATE REQUEST-----\ud800")


@settings(database=None)
@given(st.one_of(st.text(), st.binary()))
def test_request_parse_raises_only_invalid_request_when_input_is_arbitrary(
    data: str | bytes,
) -> None:
    try:
        request = CertificateRequest.from_pem(data)
    except InvalidRequestError:
        return
    assert isinstance(request, CertificateRequest)


def test_request_is_rejected_when_given_a_certificate_instead_of_a_csr() -> None:
    root = ReferenceCA.create().root

    with pytest.raises(InvalidRequestError):
        CertificateRequest.from_pem(root.public_bytes(serialization.Encoding.PEM))


def test_request_is_rejected_when_larger_than_the_limit() -> None:
    pem = make_csr().public_bytes(serialization.Encoding.PEM)
    padded = pem + b"\n" * (MAX_CSR_BYTES + 1 - len(pem))
    assert len(padded) == MAX_CSR_BYTES + 1

    with pytest.raises(InvalidRequestError, match="bytes"):
        CertificateRequest.from_pem(padded)
    with pytest.raises(InvalidRequestError):
        CertificateRequest.from_der(b"\x30" * (MAX_CSR_BYTES * 4))


def test_request_is_refused_when_its_csr_signature_bytes_are_flipped() -> None:
    tampered = x509.load_der_x509_csr(tampered_csr_der())
    assert tampered.is_signature_valid is False

    with pytest.raises(InvalidRequestError, match="signature") as info:
        CertificateRequest.from_der(tampered_csr_der())
    assert info.value.hint is not None
    with pytest.raises(InvalidRequestError, match="signature"):
        CertificateRequest.from_csr(tampered)


def test_request_is_refused_when_its_csr_has_no_common_name_and_no_sans() -> None:
    with pytest.raises(InvalidRequestError, match="neither a common name nor"):
        CertificateRequest.from_csr(make_csr(common_name=None, dns=()))


def test_request_is_accepted_when_its_csr_has_only_a_common_name_or_only_sans() -> None:
    only_cn = CertificateRequest.from_csr(make_csr(common_name="cn.test", dns=()))
    only_sans = CertificateRequest.from_csr(make_csr(common_name=None, dns=("san.test",)))

    assert only_cn.common_name == "cn.test"
    assert len(only_cn.sans) == 0
    assert only_sans.common_name is None


def test_request_is_refused_when_its_csr_has_too_many_sans() -> None:
    dns = tuple(f"h{i}.example.test" for i in range(MAX_SANS + 1))

    with pytest.raises(InvalidRequestError, match=str(MAX_SANS)):
        CertificateRequest.from_csr(make_csr(dns=dns))


def test_request_checks_its_csr_once_when_evolved_with_the_same_csr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import certctl_core.domain as domain

    calls: list[x509.CertificateSigningRequest] = []
    original = domain._checked_csr

    def counting(csr: x509.CertificateSigningRequest) -> domain._CheckedCSR:
        calls.append(csr)
        return original(csr)

    monkeypatch.setattr(domain, "_checked_csr", counting)
    request = CertificateRequest.from_csr(make_csr())
    capped = attrs.evolve(request, validity=dt.timedelta(hours=1))
    assert capped.public_key_der() == request.public_key_der()
    assert len(calls) == 1

    other = make_csr(common_name="other.test")
    changed = attrs.evolve(request, csr=other)
    assert len(calls) == 2
    assert changed.public_key_der() != request.public_key_der()


def test_request_public_key_is_the_csr_key_when_asked() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    request = CertificateRequest.from_csr(make_csr(key=key))

    assert request.public_key_der() == key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


HOUR = dt.timedelta(hours=1)


@pytest.mark.parametrize(
    ("validity", "max_ttl", "expected"),
    [
        (None, None, 24 * HOUR),
        (2 * HOUR, None, 2 * HOUR),
        (None, 3 * HOUR, 3 * HOUR),
        (2 * HOUR, 3 * HOUR, 2 * HOUR),
        (5 * HOUR, 3 * HOUR, 3 * HOUR),
        (None, 48 * HOUR, 24 * HOUR),
    ],
)
def test_effective_validity_is_wanted_or_default_capped_by_max_ttl(
    validity: dt.timedelta | None, max_ttl: dt.timedelta | None, expected: dt.timedelta
) -> None:
    request = CertificateRequest.from_csr(
        make_csr(), profile=Profile(name="p", max_ttl=max_ttl), validity=validity
    )

    assert request.effective_validity(24 * HOUR) == expected


# -- SubjectAltNames -------------------------------------------------------------------


def _csr_with_all_sans() -> x509.CertificateSigningRequest:
    key = ed25519.Ed25519PrivateKey.generate()
    names: list[x509.GeneralName] = [
        x509.DNSName("a.example.test"),
        x509.DNSName("B.example.test"),
        x509.IPAddress(ipaddress.ip_address("192.0.2.1")),
        x509.IPAddress(ipaddress.ip_address("2001:db8::1")),
        x509.RFC822Name("ops@example.test"),
        x509.UniformResourceIdentifier("spiffe://example.test/svc"),
    ]
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, None)
    )


def test_sans_of_a_csr_are_read_by_type_when_present() -> None:
    sans = SubjectAltNames.of(_csr_with_all_sans())

    assert sans.dns == ("a.example.test", "B.example.test")
    assert sans.ips == (
        ipaddress.ip_address("192.0.2.1"),
        ipaddress.ip_address("2001:db8::1"),
    )
    assert sans.emails == ("ops@example.test",)
    assert sans.uris == ("spiffe://example.test/svc",)
    assert len(sans) == 6
    assert sans.as_strings() == [
        "a.example.test",
        "B.example.test",
        "192.0.2.1",
        "2001:db8::1",
        "ops@example.test",
        "spiffe://example.test/svc",
    ]
    assert [type(n) for n in sans.to_general_names()] == [
        x509.DNSName,
        x509.DNSName,
        x509.IPAddress,
        x509.IPAddress,
        x509.RFC822Name,
        x509.UniformResourceIdentifier,
    ]


def test_sans_are_empty_when_the_csr_has_none() -> None:
    sans = SubjectAltNames.of(make_csr(dns=()))

    assert sans == SubjectAltNames()
    assert len(sans) == 0


def test_same_as_ignores_order_duplicates_and_dns_case() -> None:
    sans = SubjectAltNames.of(_csr_with_all_sans())
    shuffled = SubjectAltNames(
        dns=("b.EXAMPLE.test", "a.example.test", "a.example.test"),
        ips=(ipaddress.ip_address("2001:db8::1"), ipaddress.ip_address("192.0.2.1")),
        emails=("ops@example.test",),
        uris=("spiffe://example.test/svc",),
    )

    assert sans.same_as(shuffled)
    assert shuffled.same_as(sans)


IP4, IP6 = ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("2001:db8::1")
ALL_SANS = SubjectAltNames(
    dns=("a.example.test", "B.example.test"),
    ips=(IP4, IP6),
    emails=("ops@example.test",),
    uris=("spiffe://example.test/svc",),
)


@pytest.mark.parametrize(
    "other",
    [
        attrs.evolve(ALL_SANS, dns=("a.example.test",)),
        attrs.evolve(ALL_SANS, dns=(*ALL_SANS.dns, "c.example.test")),
        attrs.evolve(ALL_SANS, ips=(ipaddress.ip_address("192.0.2.2"), IP6)),
        attrs.evolve(ALL_SANS, emails=("OPS@example.test",)),
        attrs.evolve(ALL_SANS, uris=()),
    ],
)
def test_same_as_is_false_when_any_type_differs(other: SubjectAltNames) -> None:
    sans = SubjectAltNames.of(_csr_with_all_sans())
    assert sans == ALL_SANS

    assert not sans.same_as(other)
    assert not other.same_as(sans)


# -- IssuedCertificate -----------------------------------------------------------------


def test_issued_certificate_exposes_leaf_and_chain_when_parsed_from_pem() -> None:
    ca = ReferenceCA.create()
    csr = _csr_with_all_sans()
    leaf = ca.sign(
        csr.public_key(),
        subject=csr.subject,
        sans=SubjectAltNames.of(csr),
        validity=dt.timedelta(hours=3),
        backdate=dt.timedelta(0),
    )
    bundle = "".join(
        c.public_bytes(serialization.Encoding.PEM).decode() for c in (leaf, ca.intermediate)
    )

    issued = IssuedCertificate.from_pem_chain(bundle)

    assert issued.certificate == leaf
    assert issued.chain == (leaf, ca.intermediate)
    assert issued.serial == leaf.serial_number
    assert int(issued.serial_hex, 16) == leaf.serial_number
    assert len(issued.serial_hex) % 2 == 0
    assert issued.serial_decimal == str(leaf.serial_number)
    assert issued.not_before.tzinfo is not None
    assert issued.not_after.utcoffset() == dt.timedelta(0)
    assert issued.not_after - issued.not_before == dt.timedelta(hours=3)
    assert issued.sans.same_as(SubjectAltNames.of(csr))
    assert issued.pem == leaf.public_bytes(serialization.Encoding.PEM).decode()
    assert issued.chain_pem == bundle
    assert IssuedCertificate.from_pem_chain(bundle.encode()) == issued
    text = repr(issued)
    assert f"0x{issued.serial_hex}" in text
    assert "BEGIN CERTIFICATE" not in text


@pytest.mark.parametrize("pem", ["", "garbage", b"-----BEGIN CERTIFICATE-----\nAA==\n"])
def test_issued_certificate_is_rejected_when_pem_is_not_a_chain(pem: str | bytes) -> None:
    with pytest.raises(InvalidResponseError):
        IssuedCertificate.from_pem_chain(pem)


def test_issued_certificate_is_rejected_when_text_holds_a_lone_surrogate() -> None:
    with pytest.raises(InvalidResponseError):
        IssuedCertificate.from_pem_chain("-----BEGIN CERTIFICATE-----\ud800")


def test_issued_certificate_is_rejected_when_chain_is_empty() -> None:
    with pytest.raises(InvalidResponseError, match="empty"):
        IssuedCertificate.from_certificates([])


# -- small values ----------------------------------------------------------------------


def test_capability_names_list_only_declared_ones() -> None:
    assert Capabilities().names() == ()
    assert Capabilities(crl=True, status=True).names() == ("crl", "status")


def test_health_report_fails_only_when_a_check_failed() -> None:
    info = HealthCheck("version", None, "1.0")
    good = HealthReport((info, HealthCheck("reach", True, "ok")))
    bad = HealthReport((info, HealthCheck("auth", False, "401")))

    assert good.ok
    assert not bad.ok
    assert bad.as_dict() == {
        "ok": False,
        "checks": [
            {"name": "version", "ok": None, "detail": "1.0"},
            {"name": "auth", "ok": False, "detail": "401"},
        ],
    }


# -- errors ----------------------------------------------------------------------------


def test_config_error_lists_every_problem_when_several_fields_are_invalid() -> None:
    error = ConfigError(
        [
            ConfigProblem("url", "is missing", hint="set url to https://ca:9000"),
            ConfigProblem("provisioner", "is empty"),
            ConfigProblem("password_file", "does not exist"),
        ],
        issuer_id="prod",
        connector="stepca",
    )

    text = str(error)
    assert "3 problems" in text
    for piece in (
        "url: is missing",
        "set url to https://ca:9000",
        "provisioner: is empty",
        "password_file: does not exist",
        "stepca",
        "prod",
    ):
        assert piece in text
    assert [p.field for p in error.problems] == ["url", "provisioner", "password_file"]
    assert "1 problem:" in str(ConfigError([ConfigProblem("url", "is missing")]))


def test_error_str_names_connector_issuer_and_hint_when_given() -> None:
    error = RejectedError(
        "the CA refused", issuer_id="prod", connector="stepca", hint="check the provisioner"
    )

    assert str(error) == "[stepca issuer prod] the CA refused (hint: check the provisioner)"
    assert repr(error) == f"RejectedError({str(error)!r})"
    assert str(CertctlError("plain")) == "plain"
    assert str(CertctlError("m", issuer_id="x")) == "[? issuer x] m"
    assert str(CertctlError("m", connector="c")) == "[c issuer ?] m"
    assert str(CertctlError("m", hint="h")) == "m (hint: h)"
