"""A delegated OCSP responder certificate from a real step-ca; responses checked by openssl."""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from certctl_core import (
    CertificateRequest,
    CertificateStatus,
    InvalidResponseError,
    IssuedCertificate,
)
from certctl_core.domain import RevocationReason
from certctl_core.errors import CAUnavailableError
from certctl_core.revocation import OCSPResponder, build_ocsp_request, ocsp_error_response
from certctl_host.responder import DelegatedResponder
from certctl_stepca import StepCAIssuer
from tests.csr import make_csr

from .conftest import openssl, write_pem

pytestmark = pytest.mark.anyio

_NOCHECK = x509.ObjectIdentifier("1.3.6.1.5.5.7.48.1.5")


def _responder(connectors: dict[str, StepCAIssuer], **kwargs: object) -> DelegatedResponder:
    return DelegatedResponder(
        "corp",
        connectors["responder"].issue,
        connectors["leaf"].ca_chain,
        **kwargs,  # type: ignore[arg-type]
    )


class Ledger:
    """What a host's ledger would say: serial -> status."""

    def __init__(self) -> None:
        self.entries: dict[int, CertificateStatus] = {}

    async def lookup(self, serial: int) -> CertificateStatus:
        return self.entries.get(serial, CertificateStatus(serial, "unknown"))


async def test_step_ca_issues_a_delegated_responder_certificate(
    connectors: dict[str, StepCAIssuer],
) -> None:
    delegated = _responder(connectors)
    responder = await delegated.responder()
    assert responder is not None
    cert = responder.certificate
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.OCSP_SIGNING]
    assert cert.extensions.get_extension_for_oid(_NOCHECK).value.oid == _NOCHECK
    chain = await connectors["leaf"].ca_chain()
    assert cert.issuer == chain[0].subject
    # Cached: a second call returns the same certificate without asking the CA.
    assert await delegated.responder() is responder


async def test_openssl_verifies_good_revoked_and_unknown_answers(
    connectors: dict[str, StepCAIssuer], tmp_path: Path
) -> None:
    leaf = connectors["leaf"]
    responder = await _responder(connectors).responder()
    assert responder is not None
    good = await leaf.issue(CertificateRequest.from_csr(make_csr()))
    revoked = await leaf.issue(CertificateRequest.from_csr(make_csr()))
    await leaf.revoke(revoked.serial, RevocationReason.KEY_COMPROMISE)
    ledger = Ledger()
    ledger.entries[good.serial] = CertificateStatus(good.serial, "good")
    when = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)
    ledger.entries[revoked.serial] = CertificateStatus(
        revoked.serial, "revoked", when, RevocationReason.KEY_COMPROMISE
    )
    inter, root = await leaf.ca_chain()
    inter_pem = write_pem(tmp_path / "inter.pem", inter)
    root_pem = write_pem(tmp_path / "root.pem", root)
    unknown_serial = int.from_bytes(os.urandom(16), "big")
    cases: list[tuple[str, list[str | Path], str]] = [
        ("good", ["-cert", write_pem(tmp_path / "good.pem", good.certificate)], "good"),
        ("revoked", ["-cert", write_pem(tmp_path / "rev.pem", revoked.certificate)], "revoked"),
        ("unknown", ["-serial", str(unknown_serial)], "unknown"),
    ]
    for name, target, expected in cases:
        request = tmp_path / f"{name}.req"
        made = openssl("ocsp", "-issuer", inter_pem, *target, "-reqout", request)
        assert made.returncode == 0, made.stderr
        answer = tmp_path / f"{name}.resp"
        answer.write_bytes(await responder.respond(request.read_bytes(), ledger.lookup))
        checked = openssl(
            "ocsp", "-reqin", request, "-respin", answer,
            "-CAfile", root_pem, "-verify_other", inter_pem, "-resp_text",
        )  # fmt: skip
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "Response verify OK" in checked.stderr
        assert f"Cert Status: {expected}" in checked.stdout
        assert "OCSP Nonce" in checked.stdout  # openssl sent one; we echoed it
        if expected == "revoked":
            assert "Revocation Reason: keyCompromise" in checked.stdout
            assert "Revocation Time: Nov  1 12:00:00 2026 GMT" in checked.stdout


async def test_request_for_another_ca_is_unauthorized(
    connectors: dict[str, StepCAIssuer],
) -> None:
    responder = await _responder(connectors).responder()
    assert responder is not None
    stranger = responder.certificate  # any certificate other than the issuing CA
    request = build_ocsp_request(stranger, 42)
    answer = await responder.respond(request, Ledger().lookup)
    assert answer == ocsp_error_response("unauthorized")
    parsed = ocsp.load_der_ocsp_response(answer)
    assert parsed.response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED


@pytest.mark.parametrize("garbage", [b"", b"\x30\x03\x02\x01\x01", b"\xff" * 100, b"x" * 20000])
async def test_malformed_request_gets_malformed_request(
    connectors: dict[str, StepCAIssuer], garbage: bytes
) -> None:
    responder = await _responder(connectors).responder()
    assert responder is not None
    answer = await responder.respond(garbage, Ledger().lookup)
    status = ocsp.load_der_ocsp_response(answer).response_status
    assert status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST


async def test_failing_ledger_gets_try_later(connectors: dict[str, StepCAIssuer]) -> None:
    responder = await _responder(connectors).responder()
    assert responder is not None

    async def broken(serial: int) -> CertificateStatus:
        raise CAUnavailableError("ledger offline", status=503)

    inter = (await connectors["leaf"].ca_chain())[0]
    answer = await responder.respond(build_ocsp_request(inter, 7), broken)
    status = ocsp.load_der_ocsp_response(answer).response_status
    assert status == ocsp.OCSPResponseStatus.TRY_LATER


async def test_nonce_is_echoed_and_validity_is_stated(
    connectors: dict[str, StepCAIssuer],
) -> None:
    delegated = _responder(connectors, response_validity=dt.timedelta(minutes=10))
    responder = await delegated.responder()
    assert responder is not None
    inter = (await connectors["leaf"].ca_chain())[0]
    nonce = os.urandom(16)
    answer = ocsp.load_der_ocsp_response(
        await responder.respond(build_ocsp_request(inter, 99, nonce=nonce), Ledger().lookup)
    )
    assert answer.certificate_status == ocsp.OCSPCertStatus.UNKNOWN
    assert answer.serial_number == 99
    assert answer.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce
    assert answer.next_update_utc is not None
    assert answer.next_update_utc - answer.this_update_utc == dt.timedelta(minutes=10)


async def test_responder_renews_when_a_third_of_its_life_is_left(
    connectors: dict[str, StepCAIssuer],
) -> None:
    now = [dt.datetime.now(dt.UTC).timestamp()]
    delegated = _responder(connectors, clock=lambda: now[0])
    first = await delegated.responder()
    assert first is not None
    life = first.not_after.timestamp() - first.certificate.not_valid_before_utc.timestamp()
    now[0] = first.not_after.timestamp() - life / 3 - 60
    assert await delegated.responder() is first
    now[0] += 120
    second = await delegated.responder()
    assert second is not None and second is not first
    assert second.certificate.serial_number != first.certificate.serial_number
    assert second.certificate.public_key() != first.certificate.public_key()


async def test_certificate_without_ocsp_signing_is_refused(
    connectors: dict[str, StepCAIssuer], caplog: pytest.LogCaptureFixture
) -> None:
    # The leaf provisioner stamps serverAuth/clientAuth, not OCSPSigning.
    delegated = DelegatedResponder("corp", connectors["leaf"].issue, connectors["leaf"].ca_chain)
    with caplog.at_level(logging.WARNING):
        assert await delegated.responder() is None
    assert delegated.last_error is not None
    assert "lacks OCSPSigning" in delegated.last_error
    assert "OCSP responder certificate" in caplog.text
    # Within the retry pause, no new request goes to the CA.
    assert await delegated.responder() is None


async def test_wrong_key_or_issuer_is_refused(connectors: dict[str, StepCAIssuer]) -> None:
    responder = await _responder(connectors).responder()
    assert responder is not None
    inter = (await connectors["leaf"].ca_chain())[0]
    with pytest.raises(InvalidResponseError, match="not the responder's key"):
        OCSPResponder(inter, responder.certificate, ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(InvalidResponseError, match="not signed by the issuing CA"):
        OCSPResponder(
            responder.certificate, responder.certificate, ec.generate_private_key(ec.SECP256R1())
        )


async def test_unreachable_ca_leaves_no_responder_until_it_is_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def down(request: CertificateRequest) -> object:
        raise CAUnavailableError("the CA answered 503", status=503)

    async def chain() -> tuple[x509.Certificate, ...]:
        raise CAUnavailableError("the CA answered 503", status=503)

    delegated = DelegatedResponder("corp", down, chain)  # type: ignore[arg-type]
    with caplog.at_level(logging.DEBUG):
        assert await delegated.responder() is None
    assert "503" in (delegated.last_error or "")
    assert "cannot obtain an OCSP responder certificate" in caplog.text
    await delegated.aclose()
    assert await delegated.responder() is None


async def test_next_update_never_outlives_the_responder_certificate(
    connectors: dict[str, StepCAIssuer],
) -> None:
    delegated = _responder(connectors, response_validity=dt.timedelta(days=30))
    responder = await delegated.responder()
    assert responder is not None
    inter = (await connectors["leaf"].ca_chain())[0]
    answer = ocsp.load_der_ocsp_response(
        await responder.respond(build_ocsp_request(inter, 5), Ledger().lookup)
    )
    assert answer.next_update_utc == responder.not_after


async def test_a_new_issuing_ca_triggers_a_new_responder_certificate(
    connectors: dict[str, StepCAIssuer],
) -> None:
    leaf = connectors["leaf"]
    real_chain = await leaf.ca_chain()
    chain = [real_chain]
    asked = 0

    async def issuer_chain() -> tuple[x509.Certificate, ...]:
        return chain[0]

    async def issue(request: CertificateRequest) -> IssuedCertificate:
        nonlocal asked
        asked += 1
        return await connectors["responder"].issue(request)

    now = [dt.datetime.now(dt.UTC).timestamp()]
    delegated = DelegatedResponder("corp", issue, issuer_chain, clock=lambda: now[0])
    first = await delegated.responder()
    assert first is not None and asked == 1
    now[0] += 30  # within a minute the chain is not looked at again
    chain[0] = (first.certificate, *real_chain)  # "a new intermediate"
    assert await delegated.responder() is first
    now[0] += 31
    # The chain changed: a new certificate is asked for at once. step-ca's real
    # intermediate signs it, which is not the "new" CA, so it is refused; the old one
    # goes on answering for the old CA's certificates while it is valid.
    assert await delegated.responder() is first
    assert asked == 2
    assert "not signed by the issuing CA" in (delegated.last_error or "")
