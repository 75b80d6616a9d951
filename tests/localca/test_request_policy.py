"""What the local CA refuses or completes in a request: names, lifetimes and keys."""

from __future__ import annotations

import datetime as dt
import ipaddress
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from certctl_core import CertificateRequest, InvalidRequestError, Profile, SubjectAltNames
from certctl_core.domain import public_key_der
from certctl_localca import LocalCAIssuer

from .conftest import make_csr, open_ca, openssl, write_pem


def _openssl_csr(tmp_path: Path, subject: str) -> CertificateRequest:
    """A CSR as ``openssl req -subj`` makes it: a subject, no extensions."""
    key, csr = tmp_path / "leaf.key", tmp_path / "leaf.csr"
    made = openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", key, "-out", csr, "-subj", subject,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    return CertificateRequest.from_pem(csr.read_bytes())


@pytest.mark.anyio
async def test_cn_is_copied_into_a_dns_san_when_openssl_csr_has_no_san(
    ca: LocalCAIssuer, tmp_path: Path
) -> None:
    request = _openssl_csr(tmp_path, "/CN=app.example.test")
    assert not len(request.sans)
    issued = await ca.issue(request)

    leaf = write_pem(tmp_path / "leaf.pem", issued.certificate)
    shown = openssl("x509", "-in", leaf, "-noout", "-ext", "subjectAltName")
    assert shown.returncode == 0, shown.stderr
    assert "DNS:app.example.test" in shown.stdout
    chain = await ca.ca_chain()
    root = write_pem(tmp_path / "root.pem", chain[-1])
    inter = write_pem(tmp_path / "inter.pem", chain[0])
    verified = openssl(
        "verify", "-CAfile", root, "-untrusted", inter, "-purpose", "sslserver",
        "-verify_hostname", "app.example.test", leaf,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # With a subject the SAN is not critical (RFC 5280 §4.2.1.6).
    san = issued.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert not san.critical


@pytest.mark.anyio
@pytest.mark.parametrize("address", ["192.0.2.10", "2001:db8::10"])
async def test_ip_cn_becomes_an_ip_san_when_csr_has_no_san(
    ca: LocalCAIssuer, tmp_path: Path, address: str
) -> None:
    request = _openssl_csr(tmp_path, f"/CN={address}")
    cert = (await ca.issue(request)).certificate
    assert SubjectAltNames.of(cert) == SubjectAltNames(ips=(ipaddress.ip_address(address),))
    leaf = write_pem(tmp_path / "leaf.pem", cert)
    chain = await ca.ca_chain()
    root = write_pem(tmp_path / "root.pem", chain[-1])
    inter = write_pem(tmp_path / "inter.pem", chain[0])
    verified = openssl(
        "verify", "-CAfile", root, "-untrusted", inter, "-purpose", "sslserver",
        "-verify_ip", address, leaf,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr


@pytest.mark.anyio
@pytest.mark.parametrize("cn", ["my service", "app_1.example.test", "-app.example.test", "a..b"])
async def test_cn_only_csr_is_refused_when_cn_is_not_a_host_name(
    ca: LocalCAIssuer, cn: str
) -> None:
    request = CertificateRequest.from_csr(make_csr(common_name=cn, dns=()))
    with pytest.raises(InvalidRequestError) as caught:
        await ca.issue(request)
    assert "subjectAltName" in caught.value.message
    assert caught.value.hint is not None and "SAN" in caught.value.hint


@pytest.mark.anyio
async def test_cn_only_csr_keeps_its_cn_when_profile_has_no_server_auth(
    ca: LocalCAIssuer,
) -> None:
    # A client certificate named after a person needs no host name.
    request = CertificateRequest.from_csr(
        make_csr(common_name="Alice Smith", dns=()), profile=Profile(name="tls-client")
    )
    cert = (await ca.issue(request)).certificate
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Alice Smith"
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)


@pytest.mark.anyio
@pytest.mark.parametrize("seconds", [1, 30, 60, 61, 90])
async def test_certificate_is_valid_for_the_lifetime_from_now_when_validity_is_short(
    ca: LocalCAIssuer, seconds: int
) -> None:
    validity = dt.timedelta(seconds=seconds)
    before = time.time()
    cert = (await ca.issue(CertificateRequest.from_csr(make_csr(), validity=validity))).certificate
    assert cert.not_valid_after_utc.timestamp() >= before + seconds
    assert cert.not_valid_before_utc.timestamp() <= before
    # Never later than the request time plus the lifetime (and the clock's second).
    assert cert.not_valid_after_utc.timestamp() <= time.time() + seconds + 1


@pytest.mark.anyio
async def test_default_lifetime_is_not_expired_when_validity_days_is_one_minute(
    state_dir: Path,
) -> None:
    issuer = await open_ca(state_dir, validity_days=1 / 1440)
    try:
        before = time.time()
        cert = (await issuer.issue(CertificateRequest.from_csr(make_csr()))).certificate
        assert cert.not_valid_after_utc.timestamp() >= before + 60
    finally:
        await issuer.close()


def _csr_with_key(key: object) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "svc.example.test")])
    )
    builder = builder.add_extension(
        x509.SubjectAlternativeName([x509.DNSName("svc.example.test")]), critical=False
    )
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm)  # type: ignore[arg-type]


_WEAK_KEYS: dict[str, tuple[Callable[[], object], str]] = {
    "rsa-1024": (lambda: rsa.generate_private_key(65537, 1024), "2048"),
    "rsa-2047": (lambda: rsa.generate_private_key(65537, 2047), "2048"),
    "ec-secp256k1": (lambda: ec.generate_private_key(ec.SECP256K1()), "P-256"),
    "ec-brainpool": (lambda: ec.generate_private_key(ec.BrainpoolP256R1()), "P-256"),
    "ec-secp224r1": (lambda: ec.generate_private_key(ec.SECP224R1()), "P-256"),
    "dsa-2048": (lambda: dsa.generate_private_key(2048), "DSA"),
}


@pytest.mark.anyio
@pytest.mark.parametrize("kind", sorted(_WEAK_KEYS))
async def test_key_is_refused_when_weak_or_unsupported(ca: LocalCAIssuer, kind: str) -> None:
    make_key, named = _WEAK_KEYS[kind]
    request = CertificateRequest.from_csr(_csr_with_key(make_key()))
    with pytest.raises(InvalidRequestError) as caught:
        await ca.issue(request)
    assert named in caught.value.message
    assert caught.value.hint is not None and "2048" in caught.value.hint


_GOOD_KEYS: dict[str, Callable[[], object]] = {
    "rsa-2048": lambda: rsa.generate_private_key(65537, 2048),
    "ec-p384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "ec-p521": lambda: ec.generate_private_key(ec.SECP521R1()),
    "ed25519": ed25519.Ed25519PrivateKey.generate,
}


@pytest.mark.anyio
@pytest.mark.parametrize("kind", sorted(_GOOD_KEYS))
async def test_key_is_certified_when_supported(ca: LocalCAIssuer, kind: str) -> None:
    request = CertificateRequest.from_csr(_csr_with_key(_GOOD_KEYS[kind]()))
    cert = (await ca.issue(request)).certificate
    assert public_key_der(cert.public_key()) == request.public_key_der()
