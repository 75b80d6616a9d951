"""OCSP and CRL of step-ca issuers through the server, against a real step-ca.

step-ca has no OCSP responder: the server obtains a delegated responder certificate
(OCSPSigning EKU) from step-ca itself through a second provisioner with an x509 template,
and answers from its ledger. Checked with real openssl.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.server.conftest import CA, Server, issue, openssl, stepca_body
from tests.server.pki import OCSPCase, ocsp_url, status_line

pytestmark = pytest.mark.stepca


@pytest.fixture
def corp(server: Server, stepca: CA) -> Server:
    assert server.put("corp", stepca_body(stepca)).status_code == 201
    # A second issuer on the same CA: its certificates are unknown to "corp"'s ledger.
    assert server.put("corp2", stepca_body(stepca, responder=False)).status_code == 201
    return server


def revoke(server: Server, issuer_id: str, serial: str) -> None:
    with server.client() as client:
        response = client.post(
            f"/api/v1/issuers/{issuer_id}/revocations",
            json={"serial": "0x" + serial, "reason": "keyCompromise"},
        )
    assert response.status_code == 201, response.text


def cases(server: Server, stepca: CA, tmp_path: Path) -> dict[str, OCSPCase]:
    good = issue(server, "corp", "good.example.test")
    revoked = issue(server, "corp", "revoked.example.test")
    revoke(server, "corp", revoked["serial"])
    unknown = issue(server, "corp2", "unknown.example.test")
    intermediate = x509.load_pem_x509_certificates(good["chain"].encode())[1]
    root = stepca.process.root_file
    return {
        "good": OCSPCase(tmp_path / "good", good["certificate"], intermediate, root),
        "revoked": OCSPCase(tmp_path / "revoked", revoked["certificate"], intermediate, root),
        "unknown": OCSPCase(tmp_path / "unknown", unknown["certificate"], intermediate, root),
    }


def test_openssl_ocsp_post_verifies_delegated_answers(
    corp: Server, stepca: CA, tmp_path: Path
) -> None:
    for expected, case in cases(corp, stepca, tmp_path).items():
        output = case.post(ocsp_url(corp, "corp"))
        assert "Response verify OK" in output, output
        assert status_line(output, case.leaf) == expected
        assert "WARNING: no nonce in response" not in output
    with corp.client() as client:
        status = client.get("/api/v1/issuers/corp").json()["status"]
    assert status["ocsp"] == "delegated"
    assert status["ocsp_error"] is None


def test_ocsp_get_form_verifies_delegated_answers(corp: Server, stepca: CA, tmp_path: Path) -> None:
    for expected, case in cases(corp, stepca, tmp_path).items():
        _, output = case.get(ocsp_url(corp, "corp"))
        assert "Response verify OK" in output, output
        assert status_line(output, case.leaf) == expected
    _, output = cases(corp, stepca, tmp_path / "nonce")["good"].get(
        ocsp_url(corp, "corp"), nonce=True
    )
    assert "Response verify OK" in output


def test_responder_certificate_comes_from_stepca_with_ocsp_signing(
    corp: Server, stepca: CA
) -> None:
    issued = issue(corp, "corp")
    response = httpx.get(f"{ocsp_url(corp, 'corp')}/{issued['serial']}", trust_env=False)
    parsed = ocsp.load_der_ocsp_response(response.content)
    assert parsed.certificate_status is ocsp.OCSPCertStatus.GOOD
    (responder,) = parsed.certificates
    intermediate = x509.load_pem_x509_certificates(issued["chain"].encode())[1]
    assert responder.issuer == intermediate.subject
    eku = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.OCSP_SIGNING]
    responder.extensions.get_extension_for_oid(
        x509.oid.OCSPExtensionOID.NONCE.__class__("1.3.6.1.5.5.7.48.1.5")
    )
    responder.verify_directly_issued_by(intermediate)


def test_ocsp_answers_unauthorized_without_responder(corp: Server, stepca: CA) -> None:
    issued = issue(corp, "corp2")
    response = httpx.get(f"{ocsp_url(corp, 'corp2')}/{issued['serial']}", trust_env=False)
    assert response.status_code == 200
    parsed = ocsp.load_der_ocsp_response(response.content)
    assert parsed.response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED
    with corp.client() as client:
        assert client.get("/api/v1/issuers/corp2").json()["status"]["ocsp"] == "none"


def test_ocsp_for_another_ca_is_unauthorized(corp: Server, stepca: CA, tmp_path: Path) -> None:
    from tests.server.conftest import localca_body

    corp.put("local", localca_body(tmp_path / "state"))
    local = issue(corp, "local")
    case = OCSPCase(
        tmp_path / "x",
        local["certificate"],
        x509.load_pem_x509_certificates(local["chain"].encode())[1],
        tmp_path / "state" / "root.pem",
    )
    result = openssl(
        [
            "ocsp",
            "-issuer",
            str(case.issuer),
            "-cert",
            str(case.leaf),
            "-url",
            ocsp_url(corp, "corp"),
            "-noverify",
        ],
        check=False,
    )
    assert "unauthorized" in (result.stdout + result.stderr).lower()


def test_crl_of_stepca_is_a_problem_saying_why(corp: Server) -> None:
    response = httpx.get(f"{corp.url}/.well-known/pki/crl/corp", trust_env=False)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "urn:certctl:problem:crl-unavailable"
    assert "v0.23" in problem["detail"]
    assert "crl_enabled" in problem["detail"]


def test_stepca_secret_is_masked_and_never_logged(corp: Server, stepca: CA) -> None:
    from tests.server.conftest import PASSWORD

    with corp.client() as client:
        listed = client.get("/api/v1/issuers")
    body = listed.json()["issuers"]
    corp_view = next(i for i in body if i["id"] == "corp")
    assert corp_view["config"]["provisioner_password"] == "********"
    assert PASSWORD not in listed.text
    issue(corp, "corp")
    assert PASSWORD not in corp.log_text()
    raw = b"".join(p.read_bytes() for p in corp.data_dir.iterdir() if p.is_file())
    assert PASSWORD.encode() not in raw


def test_crl_enabled_on_a_stepca_without_crl_is_a_problem_saying_why(
    server: Server, stepca: CA
) -> None:
    # Debian's step-ca (0.19/0.20) answers 404 on /1.0/crl even when asked to publish one.
    assert server.put("crl", stepca_body(stepca, crl_enabled=True)).status_code == 201
    response = httpx.get(f"{server.url}/.well-known/pki/crl/crl", trust_env=False)
    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "urn:certctl:problem:crl-unavailable"
    assert problem["issuer_id"] == "crl"
    assert "v0.23" in problem["detail"]


def test_remove_from_crl_is_refused_before_step_ca_sees_it(corp: Server) -> None:
    # step-ca would accept reason 8; the server refuses it: it belongs in delta CRLs only.
    issued = issue(corp, "corp")
    with corp.client() as client:
        refused = client.post(
            "/api/v1/issuers/corp/revocations",
            json={"serial": "0x" + issued["serial"], "reason": "removeFromCRL"},
        )
        assert refused.status_code == 422, refused.text
        assert "delta CRLs" in refused.json()["detail"]
        # Not revoked: a real revocation afterwards is a new one.
        again = client.post(
            "/api/v1/issuers/corp/revocations",
            json={"serial": "0x" + issued["serial"], "reason": "superseded"},
        )
    assert again.status_code == 201, again.text
    assert again.json()["already_revoked"] is False
