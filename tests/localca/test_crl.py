"""CRLs: parsed and enforced by openssl, equal in content to cryptography's builder."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from certctl_core import CertificateRequest, RevocationReason
from certctl_core.revocation import Signer, SigningKey
from certctl_localca import LocalCAIssuer
from certctl_localca._crl import CRLEncoder

from .conftest import make_csr, open_ca, openssl, write_pem


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    value = crl.extensions.get_extension_for_class(x509.CRLNumber).value
    assert isinstance(value, x509.CRLNumber)
    return value.crl_number


@pytest.mark.anyio
async def test_openssl_rejects_revoked_and_accepts_good_when_checking_our_crl(
    ca: LocalCAIssuer, tmp_path: Path
) -> None:
    good = await ca.issue(CertificateRequest.from_csr(make_csr()))
    bad = await ca.issue(CertificateRequest.from_csr(make_csr(key_type="rsa")))
    await ca.revoke(bad.serial, RevocationReason.KEY_COMPROMISE)
    inter, root = await ca.ca_chain()
    der = tmp_path / "crl.der"
    der.write_bytes(await ca.crl())
    pem = tmp_path / "crl.pem"
    converted = openssl("crl", "-inform", "DER", "-in", der, "-out", pem)
    assert converted.returncode == 0, converted.stderr
    files = {
        "-CAfile": write_pem(tmp_path / "root.pem", root),
        "-untrusted": write_pem(tmp_path / "inter.pem", inter),
        "-CRLfile": pem,
    }
    args = [a for pair in files.items() for a in pair]

    accepted = openssl(
        "verify", "-crl_check", *args, write_pem(tmp_path / "good.pem", good.certificate)
    )
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert accepted.stdout.strip().endswith(": OK")

    rejected = openssl(
        "verify", "-crl_check", *args, write_pem(tmp_path / "bad.pem", bad.certificate)
    )
    assert rejected.returncode != 0
    assert "certificate revoked" in rejected.stdout + rejected.stderr


@pytest.mark.anyio
async def test_openssl_prints_every_field_when_parsing_our_crl(
    ca: LocalCAIssuer, tmp_path: Path
) -> None:
    issued = await ca.issue(CertificateRequest.from_csr(make_csr()))
    await ca.revoke(issued.serial, RevocationReason.SUPERSEDED)
    der = tmp_path / "crl.der"
    der.write_bytes(await ca.crl())
    result = openssl("crl", "-inform", "DER", "-in", der, "-noout", "-text")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "Version 2 (0x1)" in text
    assert "Signature Algorithm: ecdsa-with-SHA256" in text
    assert "X509v3 Authority Key Identifier" in text
    assert "X509v3 CRL Number" in text
    assert f"Serial Number: {issued.serial:X}" in text.replace(" 0", " ")  # openssl pads
    assert "Superseded" in text


@pytest.mark.anyio
async def test_crl_is_signed_and_complete_when_parsed_by_cryptography(ca: LocalCAIssuer) -> None:
    reasons = [
        RevocationReason.UNSPECIFIED,
        RevocationReason.KEY_COMPROMISE,
        RevocationReason.CESSATION_OF_OPERATION,
    ]
    revoked = {}
    for reason in reasons:
        issued = await ca.issue(CertificateRequest.from_csr(make_csr()))
        await ca.revoke(issued.serial, reason)
        revoked[issued.serial] = reason
    inter = (await ca.ca_chain())[0]
    crl = x509.load_der_x509_crl(await ca.crl())
    assert crl.is_signature_valid(inter.public_key())  # type: ignore[arg-type]
    assert crl.issuer == inter.subject
    assert crl.next_update_utc is not None
    assert crl.next_update_utc - crl.last_update_utc == dt.timedelta(hours=24)
    seen = {}
    for entry in crl:
        try:
            flag = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        except x509.ExtensionNotFound:
            flag = x509.ReasonFlags.unspecified  # RFC 5280: unspecified is left out
        seen[entry.serial_number] = flag
    assert seen == {s: r.x509_flag for s, r in revoked.items()}


@pytest.mark.anyio
async def test_crl_is_cached_until_a_revocation_when_asked_twice(ca: LocalCAIssuer) -> None:
    first = await ca.crl()
    assert await ca.crl() == first
    issued = await ca.issue(CertificateRequest.from_csr(make_csr()))
    await ca.revoke(issued.serial)
    second = await ca.crl()
    assert second != first
    assert (
        _crl_number(x509.load_der_x509_crl(second))
        == _crl_number(x509.load_der_x509_crl(first)) + 1
    )


@pytest.mark.anyio
async def test_empty_crl_omits_revoked_list_when_nothing_is_revoked(ca: LocalCAIssuer) -> None:
    crl = x509.load_der_x509_crl(await ca.crl())
    assert len(crl) == 0
    assert _crl_number(crl) == 1


@pytest.mark.anyio
async def test_ledger_and_crl_number_survive_when_restarted(state_dir: Path) -> None:
    first = await open_ca(state_dir)
    issued = await first.issue(CertificateRequest.from_csr(make_csr()))
    kept = await first.issue(CertificateRequest.from_csr(make_csr()))
    await first.revoke(issued.serial, RevocationReason.AFFILIATION_CHANGED)
    number = _crl_number(x509.load_der_x509_crl(await first.crl()))
    chain = await first.ca_chain()
    await first.close()

    second = await open_ca(state_dir)
    try:
        assert await second.ca_chain() == chain
        status = await second.status(issued.serial)
        assert status.state == "revoked"
        assert status.reason is RevocationReason.AFFILIATION_CHANGED
        assert (await second.status(kept.serial)).state == "good"
        again = await second.revoke(issued.serial, RevocationReason.KEY_COMPROMISE)
        assert again.already_revoked and again.reason is RevocationReason.AFFILIATION_CHANGED
        crl = x509.load_der_x509_crl(await second.crl())
        assert _crl_number(crl) == number + 1
        assert crl.get_revoked_certificate_by_serial_number(issued.serial) is not None
    finally:
        await second.close()


# -- byte identity with cryptography's builder (ADR 0019) --------------------------------
#
# The hand encoder stays only because it is faster; these tests are what makes it safe.
# The reference is cryptography's builder given the whole entry list at once. With RSA
# PKCS#1 v1.5 and Ed25519 the signature is deterministic, so the whole CRL must be equal
# byte for byte; with ECDSA the TBSCertList and the signature algorithm must be, and the
# signature must verify.

Entry = tuple[int, int, int]  # serial, revoked at (POSIX seconds), reason code
ISSUER = x509.Name(
    [
        x509.NameAttribute(x509.oid.NameOID.COUNTRY_NAME, "DE"),
        x509.NameAttribute(x509.oid.NameOID.ORGANIZATION_NAME, "certctl tests"),
        x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "Test CA \u00e9"),
    ]
)
_MIN_TIME = -631_152_000  # 1950-01-01: the builder refuses earlier times
_MAX_TIME = 253_402_300_799  # 9999-12-31T23:59:59Z


def _utc(epoch: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def _key(kind: str) -> SigningKey:
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ed25519.Ed25519PrivateKey.generate()


_ED25519 = ed25519.Ed25519PrivateKey.generate()


def _encoder(key: SigningKey) -> CRLEncoder:
    key_id = x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest
    return CRLEncoder(Signer.for_key(key), ISSUER.public_bytes(), key_id)


def _builder_crl(
    key: SigningKey, entries: list[Entry], number: int, this_update: int, next_update: int
) -> x509.CertificateRevocationList:
    revoked = []
    for serial, at, reason in entries:
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(_utc(at))
        if reason:  # RFC 5280 §5.3.1: "unspecified" is left out
            flag = RevocationReason(reason).x509_flag
            entry = entry.add_extension(x509.CRLReason(flag), critical=False)
        revoked.append(entry.build())
    key_id = x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest
    builder = (
        x509.CertificateRevocationListBuilder(revoked_certificates=revoked)
        .issuer_name(ISSUER)
        .last_update(_utc(this_update))
        .next_update(_utc(next_update))
        .add_extension(x509.AuthorityKeyIdentifier(key_id, None, None), critical=False)
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    algorithm = Signer.for_key(key).hash_algorithm
    return builder.sign(key, algorithm)


def _assert_same(
    encoder: CRLEncoder,
    key: SigningKey,
    entries: list[Entry],
    number: int,
    this_update: int,
    next_update: int,
) -> None:
    theirs = _builder_crl(key, entries, number, this_update, next_update)
    assert encoder.tbs(number, this_update, next_update) == theirs.tbs_certlist_bytes
    signed = encoder.sign(number, this_update, next_update)
    ours = x509.load_der_x509_crl(signed)
    assert ours.public_bytes(serialization.Encoding.DER) == signed  # parsed as a whole
    assert ours.is_signature_valid(key.public_key())
    assert ours.signature_algorithm_oid == theirs.signature_algorithm_oid
    assert len(ours) == len(entries)
    if not isinstance(key, ec.EllipticCurvePrivateKey):  # deterministic signatures
        assert signed == theirs.public_bytes(serialization.Encoding.DER)


_EDGE_ENTRIES: list[Entry] = [
    (1, 1_700_000_000, 1),
    (0x7F, 1_700_000_001, 0),
    (0x80, 1_700_000_002, 2),  # needs a leading zero octet
    (0xFF, 1_700_000_003, 3),
    (0x100, 1_700_000_004, 4),
    ((1 << 159) - 1, 1_700_000_005, 5),  # the largest serial: 20 octets
    (1 << 158, _MIN_TIME, 6),  # 1950, UTCTime
    ((1 << 158) + 1, 2_524_607_999, 8),  # 2049-12-31T23:59:59Z, last UTCTime
    ((1 << 158) + 2, 2_524_608_000, 9),  # 2050-01-01, first GeneralizedTime
    ((1 << 158) + 3, _MAX_TIME, 10),
]


@pytest.mark.parametrize("kind", ["p256", "p384", "rsa", "ed25519"])
def test_encoder_matches_cryptography_builder_when_given_same_entries(kind: str) -> None:
    key = _key(kind)
    encoder = _encoder(key)
    entries = [((1 << 158) + i * 7919, 1_700_000_000 + i, i % 11) for i in range(300)]
    entries = [e for e in entries if e[2] != 7] + _EDGE_ENTRIES  # 7 is not a reason code
    for serial, at, reason in entries:
        encoder.add(serial, at, reason)
    _assert_same(encoder, key, entries, 42, 1_800_000_000, 1_800_086_400)


def test_encoder_matches_builder_when_empty_or_with_extreme_numbers_and_times() -> None:
    encoder = _encoder(_ED25519)
    # No revokedCertificates at all (RFC 5280 §5.1.2.6), CRL numbers of 1 to 20 octets.
    for number in (0, 1, 127, 128, 1 << 64, (1 << 159) - 1):
        _assert_same(encoder, _ED25519, [], number, 1_800_000_000, 1_800_086_400)
    _assert_same(encoder, _ED25519, [], 1, _MIN_TIME, _MAX_TIME)
    _assert_same(encoder, _ED25519, [], 1, 2_524_607_999, 2_524_608_000)


def test_encoder_matches_builder_when_re_signed_after_each_batch_of_revocations() -> None:
    # What the connector does: entries arrive in batches (add_many, add), and each CRL
    # is signed over everything so far. Signing must leave the cached entries intact.
    encoder = _encoder(_ED25519)
    seen: list[Entry] = []
    batches = [[], [(5, 1_700_000_000, 1)], [(6, 1_700_000_100, 0), (7, 1_700_000_200, 6)]]
    batches.append([(1000 + i, 1_700_001_000 + i, (1, 4, 5)[i % 3]) for i in range(2000)])
    for number, batch in enumerate(batches, start=1):
        if len(batch) == 1:
            encoder.add(*batch[0])
        else:
            encoder.add_many([(s, at, r, i) for i, (s, at, r) in enumerate(batch)])
        seen += batch
        assert encoder.count == len(seen)
        # The last batch takes the entries' SEQUENCE past 65,535 octets (3-octet length).
        _assert_same(encoder, _ED25519, seen, number, 1_800_000_000 + number, 1_800_086_400)
        _assert_same(encoder, _ED25519, seen, number, 1_800_000_000 + number, 1_800_086_400)


_entry_lists = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=(1 << 159) - 1),
        st.integers(min_value=_MIN_TIME, max_value=_MAX_TIME),
        st.sampled_from([int(r) for r in RevocationReason]),
    ),
    max_size=40,
    unique_by=lambda entry: entry[0],
)


@settings(max_examples=150, deadline=None)
@given(
    entries=_entry_lists,
    number=st.integers(min_value=0, max_value=(1 << 159) - 1),
    this_update=st.integers(min_value=_MIN_TIME, max_value=_MAX_TIME - 1),
    valid_for=st.integers(min_value=1, max_value=10 * 365 * 86400),
)
def test_encoder_matches_builder_byte_for_byte_when_given_any_entries(
    entries: list[Entry], number: int, this_update: int, valid_for: int
) -> None:
    encoder = _encoder(_ED25519)
    for serial, at, reason in entries:
        encoder.add(serial, at, reason)
    next_update = min(this_update + valid_for, _MAX_TIME)
    _assert_same(encoder, _ED25519, entries, number, this_update, next_update)
