"""Issuance: RFC 5280 leaf profile, SANs and keys from the CSR, chains that verify."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from certctl_core import (
    CertificateRequest,
    PolicyViolationError,
    Profile,
    SubjectAltNames,
)
from certctl_core.domain import public_key_der
from certctl_localca import LocalCAIssuer
from certctl_localca._pki import BACKDATE

from .conftest import make_csr, open_ca, openssl, write_pem


def _ext(
    cert: x509.Certificate, kind: type[x509.ExtensionType]
) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_class(kind)


@pytest.mark.anyio
@pytest.mark.parametrize("key_type", ["ec", "rsa"])
async def test_sans_and_key_come_from_csr_when_issuing(
    ca: LocalCAIssuer, key_type: str, tmp_path: Path
) -> None:
    csr = make_csr(
        dns=("svc.example.test", "alt.example.test"),
        ips=("192.0.2.7", "2001:db8::7"),
        emails=("ops@example.test",),
        uris=("spiffe://example.test/svc",),
        key_type=key_type,
    )
    issued = await ca.issue(CertificateRequest.from_csr(csr))
    cert = issued.certificate

    assert SubjectAltNames.of(cert) == SubjectAltNames(
        dns=("svc.example.test", "alt.example.test"),
        ips=(ipaddress.ip_address("192.0.2.7"), ipaddress.ip_address("2001:db8::7")),
        emails=("ops@example.test",),
        uris=("spiffe://example.test/svc",),
    )
    assert public_key_der(cert.public_key()) == public_key_der(csr.public_key())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "svc.example.test"

    chain = await ca.ca_chain()
    assert issued.chain == (cert, chain[0])
    assert chain[0].subject == cert.issuer and chain[1].subject == chain[0].issuer
    # The chain verifies with a verifier we did not write, and with openssl.
    policy = PolicyBuilder().store(Store([chain[1]])).time(dt.datetime.now(dt.UTC))
    verified = policy.build_server_verifier(x509.DNSName("svc.example.test")).verify(
        cert, [chain[0]]
    )
    assert verified[-1] == chain[1]
    root = write_pem(tmp_path / "root.pem", chain[1])
    inter = write_pem(tmp_path / "inter.pem", chain[0])
    leaf = write_pem(tmp_path / "leaf.pem", cert)
    result = openssl("verify", "-CAfile", root, "-untrusted", inter, "-purpose", "sslserver", leaf)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(": OK")


@pytest.mark.anyio
async def test_leaf_follows_rfc5280_profile_when_issued(ca: LocalCAIssuer) -> None:
    issued = await ca.issue(CertificateRequest.from_csr(make_csr(key_type="rsa")))
    cert = issued.certificate
    issuer = (await ca.ca_chain())[0]

    assert cert.version is x509.Version.v3
    assert 0 < cert.serial_number < 1 << 159
    basic = _ext(cert, x509.BasicConstraints)
    assert basic.critical and basic.value == x509.BasicConstraints(ca=False, path_length=None)
    usage = _ext(cert, x509.KeyUsage)
    assert usage.critical
    assert isinstance(usage.value, x509.KeyUsage)
    assert usage.value.digital_signature and usage.value.key_encipherment  # RSA subject key
    assert not usage.value.key_cert_sign
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [  # type: ignore[call-overload]
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    ]
    ski = _ext(cert, x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    aki = _ext(cert, x509.AuthorityKeyIdentifier).value
    assert isinstance(aki, x509.AuthorityKeyIdentifier)
    assert aki.key_identifier == _ext(issuer, x509.SubjectKeyIdentifier).value.digest  # type: ignore[attr-defined]
    cdp = _ext(cert, x509.CRLDistributionPoints).value
    assert isinstance(cdp, x509.CRLDistributionPoints)
    assert cdp[0].full_name == [x509.UniformResourceIdentifier("http://ca.test/crl.der")]
    aia = _ext(cert, x509.AuthorityInformationAccess).value
    assert isinstance(aia, x509.AuthorityInformationAccess)
    assert [(d.access_method, d.access_location) for d in aia] == [
        (
            x509.oid.AuthorityInformationAccessOID.OCSP,
            x509.UniformResourceIdentifier("http://ca.test/ocsp"),
        )
    ]
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime == dt.timedelta(days=90) + BACKDATE  # counted from now, backdated
    assert cert.not_valid_before_utc <= dt.datetime.now(dt.UTC)


@pytest.mark.anyio
async def test_client_profile_gets_only_client_auth_when_requested(ca: LocalCAIssuer) -> None:
    request = CertificateRequest.from_csr(make_csr(), profile=Profile(name="tls-client"))
    cert = (await ca.issue(request)).certificate
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [  # type: ignore[call-overload]
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    usage = _ext(cert, x509.KeyUsage).value
    assert isinstance(usage, x509.KeyUsage)
    assert usage.digital_signature and not usage.key_encipherment  # EC subject key


@pytest.mark.anyio
async def test_validity_is_capped_when_profile_max_ttl_is_shorter(ca: LocalCAIssuer) -> None:
    request = CertificateRequest.from_csr(
        make_csr(),
        profile=Profile(name="default", max_ttl=dt.timedelta(hours=1)),
        validity=dt.timedelta(days=30),
    )
    cert = (await ca.issue(request)).certificate
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(hours=1) + BACKDATE


@pytest.mark.anyio
async def test_explicit_validity_is_used_when_requested(ca: LocalCAIssuer) -> None:
    request = CertificateRequest.from_csr(make_csr(), validity=dt.timedelta(days=3))
    cert = (await ca.issue(request)).certificate
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=3) + BACKDATE


@pytest.mark.anyio
async def test_serials_are_unique_and_recorded_when_issuing_many(ca: LocalCAIssuer) -> None:
    serials = set()
    for _ in range(20):
        issued = await ca.issue(CertificateRequest.from_csr(make_csr()))
        serials.add(issued.serial)
        assert (await ca.status(issued.serial)).state == "good"
        assert len(issued.serial.to_bytes(21, "big").lstrip(b"\0")) <= 20
    assert len(serials) == 20


@pytest.mark.anyio
async def test_unknown_profile_is_refused_when_strict(state_dir: Path) -> None:
    strict = await open_ca(state_dir, reject_unknown_profiles=True)
    try:
        request = CertificateRequest.from_csr(make_csr(), profile=Profile(name="mystery"))
        with pytest.raises(PolicyViolationError, match="mystery"):
            await strict.issue(request)
    finally:
        await strict.close()


@pytest.mark.anyio
async def test_custom_profile_usages_apply_when_configured(state_dir: Path) -> None:
    custom = await open_ca(
        state_dir,
        profiles={
            "mail": {
                "extended_key_usage": ["emailProtection"],
                "key_usage": ["digitalSignature", "keyEncipherment"],
            }
        },
    )
    try:
        request = CertificateRequest.from_csr(
            make_csr(emails=("a@example.test",), dns=()), profile=Profile(name="mail")
        )
        cert = (await custom.issue(request)).certificate
        assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [  # type: ignore[call-overload]
            ExtendedKeyUsageOID.EMAIL_PROTECTION
        ]
        usage = _ext(cert, x509.KeyUsage).value
        assert isinstance(usage, x509.KeyUsage)
        assert usage.key_encipherment
    finally:
        await custom.close()


@pytest.mark.anyio
async def test_san_is_critical_when_subject_is_empty(ca: LocalCAIssuer) -> None:
    cert = (await ca.issue(CertificateRequest.from_csr(make_csr(common_name=None)))).certificate
    assert cert.subject == x509.Name([])
    assert _ext(cert, x509.SubjectAlternativeName).critical
