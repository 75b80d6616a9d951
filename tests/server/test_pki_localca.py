"""CRL and OCSP of a Local CA issuer through the server, checked with real openssl."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from tests.server.conftest import Server, issue, localca_body, openssl
from tests.server.pki import OCSPCase, ocsp_url, status_line


@pytest.fixture
def local(server: Server, tmp_path: Path) -> tuple[Server, Path]:
    state = tmp_path / "state"
    assert server.put("ca1", localca_body(state)).status_code == 201
    return server, state


def revoke(server: Server, issuer_id: str, serial: str, reason: str = "keyCompromise") -> None:
    with server.client() as client:
        response = client.post(
            f"/api/v1/issuers/{issuer_id}/revocations",
            json={"serial": "0x" + serial, "reason": reason},
        )
    assert response.status_code == 201, response.text


def cases(server: Server, state: Path, tmp_path: Path) -> dict[str, OCSPCase]:
    good = issue(server, "ca1", "good.example.test")
    revoked = issue(server, "ca1", "revoked.example.test")
    revoke(server, "ca1", revoked["serial"])
    intermediate = x509.load_pem_x509_certificates(good["chain"].encode())[1]
    root = state / "root.pem"
    # A certificate this CA never issued: same issuer name and key in the CertID, but a
    # serial the ledger has never seen. openssl builds the CertID from -issuer + the
    # leaf's serial, so a leaf of *another* CA with a fresh serial asks exactly that.
    other_state = tmp_path / "other"
    server.put("other", localca_body(other_state))
    unknown = issue(server, "other", "unknown.example.test")
    return {
        "good": OCSPCase(tmp_path / "good", good["certificate"], intermediate, root),
        "revoked": OCSPCase(tmp_path / "revoked", revoked["certificate"], intermediate, root),
        "unknown": OCSPCase(tmp_path / "unknown", unknown["certificate"], intermediate, root),
    }


def test_openssl_ocsp_post_verifies_good_revoked_unknown(
    local: tuple[Server, Path], tmp_path: Path
) -> None:
    server, state = local
    for expected, case in cases(server, state, tmp_path).items():
        output = case.post(ocsp_url(server, "ca1"))
        assert "Response verify OK" in output, output
        assert status_line(output, case.leaf) == expected
        assert "WARNING: no nonce in response" not in output  # openssl's nonce is echoed
        if expected == "revoked":
            assert "Reason: keyCompromise" in output


def test_ocsp_get_form_verifies_with_openssl_respin(
    local: tuple[Server, Path], tmp_path: Path
) -> None:
    server, state = local
    for expected, case in cases(server, state, tmp_path).items():
        response, output = case.get(ocsp_url(server, "ca1"))
        assert "Response verify OK" in output, output
        assert status_line(output, case.leaf) == expected
        # Without a nonce the answer is cacheable (RFC 5019).
        assert "max-age=" in response.headers["cache-control"]
    _, output = cases(server, state, tmp_path / "nonce")["good"].get(
        ocsp_url(server, "ca1"), nonce=True
    )
    assert "WARNING: no nonce in response" not in output


def test_ocsp_by_hex_serial_states_revocation(local: tuple[Server, Path]) -> None:
    server, _ = local
    issued = issue(server, "ca1")
    revoke(server, "ca1", issued["serial"], "superseded")
    response = httpx.get(f"{ocsp_url(server, 'ca1')}/{issued['serial']}", trust_env=False)
    parsed = ocsp.load_der_ocsp_response(response.content)
    assert parsed.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert parsed.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert parsed.revocation_reason is x509.ReasonFlags.superseded
    assert parsed.serial_number == int(issued["serial"], 16)


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("ca1", b"not DER at all", ocsp.OCSPResponseStatus.MALFORMED_REQUEST),
        ("nobody", b"not DER at all", ocsp.OCSPResponseStatus.UNAUTHORIZED),
    ],
)
def test_ocsp_answers_error_status_when_request_is_bad(
    local: tuple[Server, Path], path: str, body: bytes, status: ocsp.OCSPResponseStatus
) -> None:
    server, _ = local
    response = httpx.post(
        ocsp_url(server, path),
        content=body,
        headers={"content-type": "application/ocsp-request"},
        trust_env=False,
    )
    assert response.status_code == 200
    assert ocsp.load_der_ocsp_response(response.content).response_status is status


def test_ocsp_refuses_oversized_and_wrong_media_type(local: tuple[Server, Path]) -> None:
    server, _ = local
    url = ocsp_url(server, "ca1")
    big = httpx.post(
        url,
        content=b"\x30" * (17 << 10),
        headers={"content-type": "application/ocsp-request"},
        trust_env=False,
    )
    assert big.status_code == 413
    assert big.headers["content-type"] == "application/problem+json"
    wrong = httpx.post(
        url, content=b"\x30\x00", headers={"content-type": "text/plain"}, trust_env=False
    )
    assert wrong.status_code == 415
    encoded = base64.b64encode(b"\x30" * (17 << 10)).decode()
    assert httpx.get(f"{url}/{encoded}", trust_env=False).status_code == 413


def test_openssl_accepts_crl_and_verify_crl_check_sees_revocation(
    local: tuple[Server, Path], tmp_path: Path
) -> None:
    server, state = local
    good = issue(server, "ca1", "good.example.test")
    revoked = issue(server, "ca1", "revoked.example.test")
    revoke(server, "ca1", revoked["serial"])
    response = httpx.get(f"{server.url}/.well-known/pki/crl/ca1", trust_env=False)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pkix-crl"
    assert "max-age=" in response.headers["cache-control"]
    crl_der = tmp_path / "crl.der"
    crl_der.write_bytes(response.content)
    chain = tmp_path / "chain.pem"
    intermediate_pem = good["chain"].split("-----END CERTIFICATE-----\n", 1)[1]
    chain.write_text(intermediate_pem + (state / "root.pem").read_text())
    checked = openssl(
        ["crl", "-inform", "DER", "-in", str(crl_der), "-CAfile", str(chain), "-noout", "-text"]
    )
    assert "verify OK" in checked.stderr + checked.stdout
    assert revoked["serial"].upper() in checked.stdout.upper()
    crl_pem = tmp_path / "crl.pem"
    openssl(["crl", "-inform", "DER", "-in", str(crl_der), "-out", str(crl_pem)])
    untrusted = tmp_path / "intermediate.pem"
    untrusted.write_text(intermediate_pem)
    for name, issued, ok in (("good", good, True), ("revoked", revoked, False)):
        leaf = tmp_path / f"{name}.pem"
        leaf.write_text(issued["certificate"])
        result = openssl(
            [
                "verify",
                "-crl_check",
                "-CAfile",
                str(state / "root.pem"),
                "-untrusted",
                str(untrusted),
                "-CRLfile",
                str(crl_pem),
                str(leaf),
            ],
            check=False,
        )
        if ok:
            assert result.returncode == 0, result.stdout + result.stderr
        else:
            assert result.returncode != 0
            assert "certificate revoked" in result.stdout + result.stderr


def test_crl_etag_answers_304_when_unchanged(local: tuple[Server, Path]) -> None:
    server, _ = local
    url = f"{server.url}/.well-known/pki/crl/ca1"
    first = httpx.get(url, trust_env=False)
    etag = first.headers["etag"]
    again = httpx.get(url, headers={"if-none-match": etag}, trust_env=False)
    assert again.status_code == 304
    assert again.content == b""
    issued = issue(server, "ca1")
    revoke(server, "ca1", issued["serial"])
    changed = httpx.get(url, headers={"if-none-match": etag}, trust_env=False)
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag


def test_well_known_is_rate_limited_per_client(tmp_path: Path) -> None:
    server = Server(tmp_path, rate_limit_per_second=0.01, rate_limit_burst=3)
    server.start()
    try:
        server.put("ca1", localca_body(tmp_path / "state"))
        url = f"{server.url}/.well-known/pki/crl/ca1"
        statuses = [httpx.get(url, trust_env=False) for _ in range(4)]
        # The API is not rate limited.
        with server.client() as client:
            assert all(client.get("/api/v1/issuers").status_code == 200 for _ in range(5))
    finally:
        server.stop()
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    assert int(statuses[-1].headers["retry-after"]) >= 1
    assert statuses[-1].headers["content-type"] == "application/problem+json"


def _ocsp_get(server: Server, path: str) -> httpx.Response:
    response = httpx.get(f"{ocsp_url(server, 'ca1')}/{path}", trust_env=False)
    # Every answer is in-band: HTTP 200 with an OCSP response, as for POST.
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/ocsp-response"
    return response


@pytest.mark.parametrize("path", ["0", "00", "not-base64!", "M", "MA%3D%3D%3D%3D"])
def test_ocsp_get_answers_malformed_request_in_band_when_path_is_bad(
    local: tuple[Server, Path], path: str
) -> None:
    server, _ = local
    answer = ocsp.load_der_ocsp_response(_ocsp_get(server, path).content)
    assert answer.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_ocsp_get_accepts_url_safe_unpadded_base64(local: tuple[Server, Path]) -> None:
    server, _ = local
    issued = issue(server, "ca1")
    leaf, intermediate = x509.load_pem_x509_certificates(issued["chain"].encode())[:2]
    # Find a request (a nonce varies it) whose base64 has both "+" or "/" and padding,
    # so the URL-safe, unpadded form really differs from the standard one. The nonce's
    # length varies too: with some serials a 16-byte nonce makes a request whose length
    # is a multiple of 3, which base64 never pads.
    for attempt in range(1000):
        request = (
            ocsp.OCSPRequestBuilder()
            .add_certificate(leaf, intermediate, hashes.SHA1())
            .add_extension(x509.OCSPNonce(os.urandom(16 + attempt % 3)), critical=False)
            .build()
            .public_bytes(serialization.Encoding.DER)
        )
        standard = base64.b64encode(request).decode()
        if ("+" in standard or "/" in standard) and standard.endswith("="):
            break
    else:
        pytest.fail("no request with '+' or '/' and padding in 1000 tries")
    url_safe = base64.urlsafe_b64encode(request).decode().rstrip("=")
    assert url_safe.startswith("M")
    answer = ocsp.load_der_ocsp_response(_ocsp_get(server, url_safe).content)
    assert answer.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert answer.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert answer.serial_number == leaf.serial_number


def test_ocsp_get_takes_41_and_42_hex_digits_as_a_serial(local: tuple[Server, Path]) -> None:
    server, _ = local
    issued = issue(server, "ca1")
    digits = issued["serial"].rjust(40, "0")
    for path in ("0" + digits, "00" + digits):
        answer = ocsp.load_der_ocsp_response(_ocsp_get(server, path).content)
        assert answer.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL, path
        assert answer.serial_number == int(issued["serial"], 16)
    # More than 20 octets is no serial at all.
    too_big = ocsp.load_der_ocsp_response(_ocsp_get(server, "01" + "00" * 20).content)
    assert too_big.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_crl_if_none_match_star_answers_304(local: tuple[Server, Path]) -> None:
    server, _ = local
    url = f"{server.url}/.well-known/pki/crl/ca1"
    answer = httpx.get(url, headers={"if-none-match": "*"}, trust_env=False)
    assert answer.status_code == 304
    assert answer.content == b""
    assert answer.headers["etag"]


def test_revocation_with_remove_from_crl_is_refused(local: tuple[Server, Path]) -> None:
    server, _ = local
    issued = issue(server, "ca1")
    for reason in ("removeFromCRL", 8):
        with server.client() as client:
            response = client.post(
                "/api/v1/issuers/ca1/revocations",
                json={"serial": "0x" + issued["serial"], "reason": reason},
            )
        assert response.status_code == 422, response.text
        assert "delta CRL" in response.json()["detail"]
    status = ocsp.load_der_ocsp_response(_ocsp_get(server, issued["serial"]).content)
    assert status.certificate_status is ocsp.OCSPCertStatus.GOOD
