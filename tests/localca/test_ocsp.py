"""OCSP: responses verified by ``openssl ocsp``, with nonces; malformed requests refused."""

from __future__ import annotations

import time
import types
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from certctl_core import CertificateRequest, InvalidRequestError, RevocationReason
from certctl_core.revocation import MAX_OCSP_REQUEST_BYTES
from certctl_localca import LocalCAIssuer, _connector

from .conftest import make_csr, openssl, write_pem


async def _check_with_openssl(
    ca: LocalCAIssuer, tmp_path: Path, *target: str | Path
) -> tuple[str, str]:
    """openssl builds a request (with a nonce) for ``target``, we answer it, and openssl
    verifies the answer: signature, responder authorisation, nonce. Returns its output."""
    inter, root = await ca.ca_chain()
    inter_pem = write_pem(tmp_path / "inter.pem", inter)
    root_pem = write_pem(tmp_path / "root.pem", root)
    request = tmp_path / "req.der"
    made = openssl("ocsp", "-issuer", inter_pem, *target, "-reqout", request)
    assert made.returncode == 0, made.stderr
    response = tmp_path / "resp.der"
    response.write_bytes(await ca.ocsp(request.read_bytes()))
    checked = openssl(
        "ocsp", "-reqin", request, "-respin", response,
        "-CAfile", root_pem, "-verify_other", inter_pem, "-resp_text",
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Response verify OK" in checked.stderr
    assert "Nonce Verify error" not in checked.stderr
    assert "no nonce in response" not in checked.stderr
    assert "OCSP Nonce" in checked.stdout
    # And by certificate id, as a client checking one certificate would.
    by_id = openssl(
        "ocsp", "-respin", response, "-issuer", inter_pem, *target, "-no_nonce",
        "-CAfile", root_pem, "-verify_other", inter_pem,
    )  # fmt: skip
    assert by_id.returncode == 0, by_id.stdout + by_id.stderr
    return checked.stdout, by_id.stdout


@pytest.mark.anyio
async def test_openssl_verifies_good_response_when_certificate_is_valid(
    ca: LocalCAIssuer, tmp_path: Path
) -> None:
    issued = await ca.issue(CertificateRequest.from_csr(make_csr()))
    leaf = write_pem(tmp_path / "leaf.pem", issued.certificate)
    text, line = await _check_with_openssl(ca, tmp_path, "-cert", leaf)
    assert "Cert Status: good" in text
    assert f"{leaf}: good" in line


@pytest.mark.anyio
async def test_openssl_verifies_revoked_response_when_certificate_is_revoked(
    ca: LocalCAIssuer, tmp_path: Path
) -> None:
    issued = await ca.issue(CertificateRequest.from_csr(make_csr()))
    await ca.revoke(issued.serial, RevocationReason.KEY_COMPROMISE)
    leaf = write_pem(tmp_path / "leaf.pem", issued.certificate)
    text, line = await _check_with_openssl(ca, tmp_path, "-cert", leaf)
    assert "Cert Status: revoked" in text
    assert "Revocation Reason: keyCompromise (0x1)" in text
    assert f"{leaf}: revoked" in line


@pytest.mark.anyio
async def test_openssl_verifies_unknown_response_when_serial_was_never_issued(
    ca: LocalCAIssuer, tmp_path: Path
) -> None:
    text, line = await _check_with_openssl(ca, tmp_path, "-serial", "0x0badc0ffee")
    assert "Cert Status: unknown" in text
    assert "0x0badc0ffee: unknown" in line


@pytest.mark.anyio
async def test_openssl_detects_mismatch_when_nonce_is_not_the_one_sent(
    ca: LocalCAIssuer, tmp_path: Path
) -> None:
    issued = await ca.issue(CertificateRequest.from_csr(make_csr()))
    inter, root = await ca.ca_chain()
    inter_pem = write_pem(tmp_path / "inter.pem", inter)
    root_pem = write_pem(tmp_path / "root.pem", root)
    leaf = write_pem(tmp_path / "leaf.pem", issued.certificate)
    for name in ("a.der", "b.der"):
        assert (
            openssl(
                "ocsp", "-issuer", inter_pem, "-cert", leaf, "-reqout", tmp_path / name
            ).returncode
            == 0
        )
    (tmp_path / "resp.der").write_bytes(await ca.ocsp((tmp_path / "a.der").read_bytes()))
    checked = openssl(
        "ocsp", "-reqin", tmp_path / "b.der", "-respin", tmp_path / "resp.der",
        "-CAfile", root_pem, "-verify_other", inter_pem,
    )  # fmt: skip
    assert checked.returncode != 0
    assert "Nonce Verify error" in checked.stderr


@pytest.mark.anyio
async def test_sha256_cert_id_is_answered_when_client_uses_it(ca: LocalCAIssuer) -> None:
    issued = await ca.issue(CertificateRequest.from_csr(make_csr()))
    inter = (await ca.ca_chain())[0]
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(issued.certificate, inter, hashes.SHA256())
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    response = ocsp.load_der_ocsp_response(await ca.ocsp(request))
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert isinstance(response.hash_algorithm, hashes.SHA256)
    assert response.serial_number == issued.serial
    assert len(response.extensions) == 0  # no nonce asked, none given
    responder = response.certificates[0]
    responder.verify_directly_issued_by(inter)
    assert response.signature_algorithm_oid == x509.oid.SignatureAlgorithmOID.ECDSA_WITH_SHA256
    public = responder.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(response.signature, response.tbs_response_bytes, ec.ECDSA(hashes.SHA256()))


@pytest.mark.anyio
async def test_responder_certificate_is_delegated_when_answering(ca: LocalCAIssuer) -> None:
    issued = await ca.issue(CertificateRequest.from_csr(make_csr()))
    inter = (await ca.ca_chain())[0]
    request = ocsp.OCSPRequestBuilder().add_certificate(issued.certificate, inter, hashes.SHA1())
    der = request.build().public_bytes(serialization.Encoding.DER)
    responder = ocsp.load_der_ocsp_response(await ca.ocsp(der)).certificates[0]
    eku = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.OCSP_SIGNING]
    assert responder.extensions.get_extension_for_class(x509.OCSPNoCheck)
    assert responder.issuer == inter.subject
    assert (await ca.status(responder.serial_number)).state == "good"  # in the ledger


@pytest.mark.anyio
async def test_responder_is_renewed_when_two_thirds_of_its_life_passed(
    ca: LocalCAIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued = await ca.issue(CertificateRequest.from_csr(make_csr()))
    inter = (await ca.ca_chain())[0]
    request = ocsp.OCSPRequestBuilder().add_certificate(issued.certificate, inter, hashes.SHA1())
    der = request.build().public_bytes(serialization.Encoding.DER)
    before = ocsp.load_der_ocsp_response(await ca.ocsp(der)).certificates[0]
    same = ocsp.load_der_ocsp_response(await ca.ocsp(der)).certificates[0]
    assert same == before
    later = time.time() + 5 * 86400  # past 2/3 of the 7-day responder lifetime
    monkeypatch.setattr(_connector, "time", types.SimpleNamespace(time=lambda: later))
    after = ocsp.load_der_ocsp_response(await ca.ocsp(der)).certificates[0]
    assert after.serial_number != before.serial_number
    assert after.not_valid_after_utc > before.not_valid_after_utc


@pytest.mark.anyio
@pytest.mark.parametrize(
    "garbage",
    [b"", b"\x00", b"hello, responder", b"\x30\x03\x02\x01\x01", b"\x30\x84\xff\xff\xff\xff"],
)
async def test_garbage_is_a_typed_error_when_sent_as_ocsp_request(
    ca: LocalCAIssuer, garbage: bytes
) -> None:
    with pytest.raises(InvalidRequestError, match="OCSP"):
        await ca.ocsp(garbage)


@pytest.mark.anyio
async def test_oversized_request_is_refused_when_above_the_bound(ca: LocalCAIssuer) -> None:
    with pytest.raises(InvalidRequestError, match="bytes"):
        await ca.ocsp(b"\x30" + b"\x00" * MAX_OCSP_REQUEST_BYTES)


@pytest.mark.anyio
async def test_other_issuer_gets_unauthorized_when_cert_id_is_not_ours(ca: LocalCAIssuer) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "someone else")])
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate_by_hash(b"\x01" * 20, b"\x02" * 20, 12345, hashes.SHA1())
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    response = ocsp.load_der_ocsp_response(await ca.ocsp(request))
    assert response.response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED
    assert key and name  # the CertID above names neither our CA nor any real one
