"""One ledger for every replica: a certificate issued on one replica and revoked on another
is answered correctly by every replica's OCSP responder within 1 s (``openssl ocsp``), with
and without a nonce."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cryptography import x509

from tests.replicas.conftest import Deployment
from tests.server.conftest import issue
from tests.server.pki import OCSPCase, ocsp_url, status_line

pytestmark = pytest.mark.stepca

ISSUER = "ledger"


def test_issued_and_revoked_on_one_replica_is_answered_by_every_replica(
    deployment: Deployment, tmp_path: Path
) -> None:
    r0, r1, r2 = deployment.replicas
    saved = r0.put(ISSUER, deployment.body(deployment.static, responder=True))
    assert saved.status_code == 201, saved.text
    deployment.wait_all_serving(saved.json()["revision"], issuer=ISSUER)

    issued = issue(r1, ISSUER, "shared-ledger.example.test")
    intermediate = x509.load_pem_x509_certificates(issued["chain"].encode())[1]
    case = OCSPCase(tmp_path / "ocsp", issued["certificate"], intermediate, deployment.ca.root_file)

    def answered(replica_state: str) -> float:
        """Every replica gives ``replica_state``, to a request with a nonce (signed for it)
        and to one without (which a single server may answer from its cache; replicas on a
        shared store must not, ADR 0026); the seconds until the last one did."""
        start = time.monotonic()
        for replica in deployment.replicas:
            for nonce in (True, False):
                while True:
                    output = case.post(ocsp_url(replica, ISSUER), nonce=nonce)
                    assert "Response verify OK" in output, output
                    line = status_line(output, case.leaf)
                    if line == replica_state:
                        break
                    assert time.monotonic() - start < 1.0, f"{replica.url}: {line}"
        return time.monotonic() - start

    answered("good")
    answered("good")  # asked again: a replica that kept its nonce-less "good" would show
    with r2.client() as client:
        response = client.post(
            f"/api/v1/issuers/{ISSUER}/revocations",
            json={"serial": "0x" + issued["serial"].removeprefix("0x"), "reason": "keyCompromise"},
        )
    assert response.status_code == 201, response.text
    took = answered("revoked")
    assert took < 1.0
    # The same revocation asked of another replica is reported as already done.
    with r0.client() as client:
        again = client.post(
            f"/api/v1/issuers/{ISSUER}/revocations",
            json={"serial": "0x" + issued["serial"].removeprefix("0x"), "reason": "superseded"},
        )
    assert again.status_code == 200, again.text
