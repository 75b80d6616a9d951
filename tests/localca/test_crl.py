"""CRLs: parsed and enforced by openssl, equal in content to cryptography's builder."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certctl_core import CertificateRequest, RevocationReason
from certctl_core.revocation import Signer
from certctl_localca import LocalCAIssuer
from certctl_localca._crl import CrlEncoder

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


def test_encoder_matches_cryptography_builder_when_given_same_entries() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "Test CA")])
    key_id = x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest
    encoder = CrlEncoder(Signer.for_key(key), issuer.public_bytes(), key_id)
    this_update, next_update = 1_800_000_000, 1_800_086_400
    entries = [((1 << 158) + i * 7919, 1_700_000_000 + i, i % 6) for i in range(300)]
    entries += [
        (1, 1_700_000_000, 1),
        ((1 << 159) - 1, 2_600_000_000, 9),
    ]  # edge serials, year 2052
    for serial, at, reason in entries:
        encoder.add(serial, at, reason)

    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer)
        .last_update(dt.datetime.fromtimestamp(this_update, dt.UTC))
        .next_update(dt.datetime.fromtimestamp(next_update, dt.UTC))
        .add_extension(x509.AuthorityKeyIdentifier(key_id, None, None), critical=False)
        .add_extension(x509.CRLNumber(42), critical=False)
    )
    for serial, at, reason in entries:
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(dt.datetime.fromtimestamp(at, dt.UTC))
        )
        if reason:
            entry = entry.add_extension(
                x509.CRLReason(RevocationReason(reason).x509_flag), critical=False
            )
        builder = builder.add_revoked_certificate(entry.build())
    theirs = builder.sign(key, hashes.SHA256())

    # Byte-identical to-be-signed part; our signature verifies.
    assert encoder.tbs(42, this_update, next_update) == theirs.tbs_certlist_bytes
    signed = encoder.sign(42, this_update, next_update)
    ours = x509.load_der_x509_crl(signed)
    assert ours.is_signature_valid(key.public_key())
    assert ours.public_bytes(serialization.Encoding.DER) == signed  # parsed as a whole
    assert ours.tbs_certlist_bytes == theirs.tbs_certlist_bytes
