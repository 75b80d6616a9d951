"""One Local CA served by three replicas through its shared ledger (``ledger_url``): the
same CA on every replica, serials that never collide, one CRL number sequence, and a
revocation made on one replica in every replica's CRL and OCSP answers (ADR 0024)."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.replicas.conftest import Deployment
from tests.server.conftest import LOCALCA_PASSWORD, make_csr, openssl
from tests.server.pki import OCSPCase, ocsp_url, status_line

pytestmark = pytest.mark.stepca  # the deployment fixture runs a step-ca too

ISSUER = "local"
PER_REPLICA = 12


def crl_of(replica_url: str) -> x509.CertificateRevocationList:
    response = httpx.get(f"{replica_url}/.well-known/pki/crl/{ISSUER}", trust_env=False)
    assert response.status_code == 200, response.text
    return x509.load_der_x509_crl(response.content)


def crl_number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def test_one_local_ca_across_replicas(deployment: Deployment, tmp_path: Path) -> None:
    r0, r1, r2 = deployment.replicas
    body = {
        "type": "localca",
        "config": {
            # Each replica's own directory would do: with a ledger the CA is not in it.
            "state_dir": str(tmp_path / "unused-state"),
            "key_password": LOCALCA_PASSWORD,
            "ledger_url": deployment.url,
        },
    }
    saved = r0.put(ISSUER, body)
    assert saved.status_code == 201, saved.text
    assert deployment.postgres.password not in saved.text  # the URL is masked like a secret
    deployment.wait_all_serving(saved.json()["revision"], issuer=ISSUER)

    # Every replica issues at once; serials are distinct and every chain is the same CA.
    issued: list[dict[str, str]] = []
    lock = threading.Lock()

    def issue_on(replica_index: int) -> None:
        with deployment.replicas[replica_index].client() as client:
            for i in range(PER_REPLICA):
                csr = make_csr(f"l{replica_index}-{i}.replicas.test")[0]
                response = client.post(f"/api/v1/issuers/{ISSUER}/certificates", json={"csr": csr})
                assert response.status_code == 201, response.text
                with lock:
                    issued.append(response.json())

    threads = [threading.Thread(target=issue_on, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(issued) == 3 * PER_REPLICA
    assert len({c["serial"] for c in issued}) == len(issued)
    cas = {
        tuple(
            c.public_bytes(Encoding.DER)
            for c in x509.load_pem_x509_certificates(i["chain"].encode())[1:]
        )
        for i in issued
    }
    assert len(cas) == 1  # one CA behind every replica
    chain = x509.load_pem_x509_certificates(issued[0]["chain"].encode())[1:]
    # The CA is in the shared ledger (its key encrypted with key_password), root last.
    with psycopg.connect(deployment.url) as conn:
        stored = conn.execute(
            "SELECT chain_pem, key_pem FROM localca_ca WHERE scope = %s", (ISSUER,)
        ).fetchone()
    assert stored is not None
    assert b"ENCRYPTED PRIVATE KEY" in bytes(stored[1])
    root = tmp_path / "root.pem"
    root.write_bytes(
        x509.load_pem_x509_certificates(bytes(stored[0]))[-1].public_bytes(Encoding.PEM)
    )
    untrusted = tmp_path / "intermediate.pem"
    untrusted.write_text(issued[0]["chain"])
    leaf = tmp_path / "leaf.pem"
    leaf.write_text(issued[-1]["certificate"])
    openssl(["verify", "-CAfile", str(root), "-untrusted", str(untrusted), str(leaf)])
    with psycopg.connect(deployment.url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM localca_certificates WHERE scope = %s", (ISSUER,)
        ).fetchone()
    assert row is not None and row[0] >= len(issued)  # plus each replica's OCSP responder

    # One CRL sequence: numbers never go back, whichever replica a client asks.
    numbers = [crl_number(crl_of(r.url)) for r in (r0, r1, r2, r0)]
    victim = issued[5]
    with r1.client() as client:
        response = client.post(
            f"/api/v1/issuers/{ISSUER}/revocations",
            json={"serial": "0x" + victim["serial"], "reason": "keyCompromise"},
        )
    assert response.status_code == 201, response.text
    for replica in (r2, r0, r1):
        crl = crl_of(replica.url)
        numbers.append(crl_number(crl))
        assert crl.get_revoked_certificate_by_serial_number(int(victim["serial"], 16)) is not None
        assert crl.is_signature_valid(chain[0].public_key())  # type: ignore[arg-type]
    assert numbers == sorted(numbers)
    assert numbers[-1] > numbers[3]  # the revocation made a new CRL, once for all

    case = OCSPCase(tmp_path / "ocsp", victim["certificate"], chain[0], root)
    for replica in deployment.replicas:
        output = case.post(ocsp_url(replica, ISSUER))
        assert "Response verify OK" in output, output
        assert status_line(output, case.leaf).startswith("revoked")


def test_local_ca_without_a_shared_ledger_is_refused_on_replicas(
    deployment: Deployment, tmp_path: Path
) -> None:
    """Every replica builds every issuer: a Local CA in a state directory would become one
    CA per replica, so a shared store refuses it and names the field that fixes it."""
    body = {
        "type": "localca",
        "config": {"state_dir": str(tmp_path / "state"), "key_password": LOCALCA_PASSWORD},
    }
    refused = deployment.replicas[1].put("local-files", body)
    assert refused.status_code == 422, refused.text
    problems = refused.json()["errors"]
    assert [p["field"] for p in problems] == ["config.ledger_url"], problems
    assert "separate CA" in problems[0]["message"]
    assert LOCALCA_PASSWORD not in refused.text
    with deployment.replicas[0].client() as client:
        assert client.get("/api/v1/issuers/local-files").status_code == 404
