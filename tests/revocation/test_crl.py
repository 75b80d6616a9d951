"""CRLs a CA publishes: verify_crl (on the reference CA), and step-ca's CRL through the
connector."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certctl_contracts.reference import ReferenceCA
from certctl_core import InvalidResponseError, UnsupportedCapabilityError
from certctl_core.revocation import Signer, der, verify_crl
from certctl_stepca import build_stepca_issuer
from certctl_stepca.testing import Fault, FaultProxy, Replacement

from .conftest import ResponderCA

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def _crl(
    issuer: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
    *,
    last: dt.datetime = NOW - dt.timedelta(minutes=1),
    next_update: dt.datetime = NOW + dt.timedelta(hours=1),
    revoked: tuple[int, ...] = (),
    number: int | None = 7,
) -> bytes:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(last)
        .next_update(next_update)
    )
    if number is not None:
        builder = builder.add_extension(x509.CRLNumber(number), critical=False)
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(last).build()
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _crl_without_next_update(issuer: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bytes:
    """nextUpdate is optional in ASN.1; cryptography's builder insists on it, so by hand."""
    signer = Signer.for_key(key)
    tbs = der.sequence(
        der.integer(1),
        signer.algorithm_der,
        issuer.subject.public_bytes(),
        der.x509_time(int(NOW.timestamp()) - 60),
    )
    return der.sequence(tbs, signer.algorithm_der, der.bit_string(signer.sign(tbs)))


def test_a_current_crl_signed_by_the_issuing_ca_verifies() -> None:
    ca = ReferenceCA.create()
    der = _crl(ca.intermediate, ca.intermediate_key, revoked=(5, 6))
    info = verify_crl(der, ca.chain)
    assert info.der == der
    assert info.issuer == ca.intermediate
    assert info.number == 7
    assert info.next_update == NOW + dt.timedelta(hours=1)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("not-der", "not a DER-encoded X.509 CRL"),
        ("stranger", "not in the issuer's chain"),
        ("bad-signature", "signature does not verify"),
        ("expired", "expired at"),
        ("future", "in the future"),
        ("no-next-update", "no nextUpdate"),
    ],
)
def test_a_bad_crl_is_refused_with_the_reason(case: str, message: str) -> None:
    ca = ReferenceCA.create()
    root_key = ca.root_key
    assert root_key is not None
    other = ec.generate_private_key(ec.SECP256R1())
    inter, key = ca.intermediate, ca.intermediate_key
    makers: dict[str, Callable[[], bytes]] = {
        "not-der": lambda: b"\x30\x03garbage",
        "stranger": lambda: _crl(ca.root, root_key),
        "bad-signature": lambda: _crl(inter, other),
        "expired": lambda: _crl(
            inter, key, last=NOW - dt.timedelta(days=2), next_update=NOW - dt.timedelta(days=1)
        ),
        "future": lambda: _crl(
            inter, key, last=NOW + dt.timedelta(hours=1), next_update=NOW + dt.timedelta(hours=2)
        ),
        "no-next-update": lambda: _crl_without_next_update(inter, key),
    }
    with pytest.raises(InvalidResponseError, match=message):
        verify_crl(makers[case](), (inter,))


@pytest.fixture
def crl_proxy(responder_ca: ResponderCA, tmp_path: Path) -> Iterator[FaultProxy]:
    """The real step-ca behind a fault proxy, which alone serves ``/1.0/crl`` (step-ca
    0.19/0.20 have no CRL)."""
    with FaultProxy.for_stepca(responder_ca.process, tmp_path / "proxy") as proxy:
        yield proxy


def _serve_crl(proxy: FaultProxy, der: bytes) -> None:
    crl = Replacement(200, headers=(("content-type", "application/pkix-crl"),), chunk=der)
    proxy.inject(Fault.REPLACE, path="/1.0/crl", replacement=crl)


async def _issuer(ca: ResponderCA, **overrides: Any) -> Any:
    return await build_stepca_issuer("corp", ca.config(**overrides), env={})


@pytest.mark.anyio
async def test_crl_is_unsupported_with_the_reason_unless_enabled(
    responder_ca: ResponderCA,
) -> None:
    issuer = await _issuer(responder_ca)
    try:
        assert not issuer.capabilities.crl
        with pytest.raises(UnsupportedCapabilityError) as caught:
            await issuer.crl()
        assert "v0.23" in (caught.value.hint or "")
    finally:
        await issuer.close()


@pytest.mark.anyio
async def test_real_step_ca_without_crl_says_so(responder_ca: ResponderCA) -> None:
    issuer = await _issuer(responder_ca, crl_enabled=True)
    try:
        assert issuer.capabilities.crl
        with pytest.raises(UnsupportedCapabilityError) as caught:
            await issuer.crl()
        assert "404" in (caught.value.hint or "")
    finally:
        await issuer.close()


@pytest.mark.anyio
async def test_published_crl_is_verified_and_cached(
    responder_ca: ResponderCA, crl_proxy: FaultProxy
) -> None:
    pki = responder_ca.process.pki
    der = _crl(pki.intermediate_cert, pki.intermediate_key, revoked=(11,))
    _serve_crl(crl_proxy, der)
    issuer = await _issuer(responder_ca, ca_url=crl_proxy.url, crl_enabled="true")
    try:
        assert await issuer.crl() == der
        assert await issuer.crl() == der
        assert [r.path for r in crl_proxy.requests].count("/1.0/crl") == 1
    finally:
        await issuer.close()


@pytest.mark.anyio
async def test_forged_crl_is_refused(responder_ca: ResponderCA, crl_proxy: FaultProxy) -> None:
    pki = responder_ca.process.pki
    _serve_crl(crl_proxy, _crl(pki.intermediate_cert, ec.generate_private_key(ec.SECP256R1())))
    issuer = await _issuer(responder_ca, ca_url=crl_proxy.url, crl_enabled=True)
    try:
        with pytest.raises(InvalidResponseError, match="signature does not verify"):
            await issuer.crl()
    finally:
        await issuer.close()


def test_crl_enabled_must_be_a_boolean(responder_ca: ResponderCA) -> None:
    from certctl_core import ConfigError
    from certctl_stepca.config import StepCAConfig

    with pytest.raises(ConfigError, match="crl_enabled"):
        StepCAConfig.from_mapping(responder_ca.config(crl_enabled="maybe"), env={})
    parsed = StepCAConfig.from_mapping(
        responder_ca.config(), env={"CERTCTL_STEPCA_CRL_ENABLED": "yes"}
    )
    assert parsed.crl_enabled
