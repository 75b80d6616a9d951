"""Hot-swap under load, restarts, and issuers that cannot be built at start."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.x509 import ocsp

from tests.server.conftest import CA, Server, issue, localca_body, make_csr, stepca_body
from tests.server.pki import ocsp_url

pytestmark = pytest.mark.stepca


@pytest.fixture
def unlimited(tmp_path: Path) -> Iterator[Server]:
    """A server whose .well-known rate limit is out of the way: the load below is the point."""
    running = Server(tmp_path / "unlimited", rate_limit_per_second=1e6, rate_limit_burst=10**7)
    running.directory.mkdir()
    running.start()
    yield running
    running.stop()


def test_hot_swap_through_put_loses_no_request(
    unlimited: Server, stepca: CA, tmp_path: Path
) -> None:
    server = unlimited
    assert server.put("corp", stepca_body(stepca)).status_code == 201
    assert server.put("local", localca_body(tmp_path / "state")).status_code == 201
    stop = threading.Event()
    outcomes: list[int] = []
    failures: list[str] = []
    lock = threading.Lock()

    def worker(issuer_id: str) -> None:
        csr, _ = make_csr(f"{issuer_id}.example.test")
        with server.client() as client:
            while not stop.is_set():
                response = client.post(
                    f"/api/v1/issuers/{issuer_id}/certificates", json={"csr": csr}
                )
                with lock:
                    outcomes.append(response.status_code)
                    if response.status_code != 201:
                        failures.append(response.text)
                serial = response.json().get("serial", "01")
                answer = client.get(f"/.well-known/pki/ocsp/{issuer_id}/{serial}")
                with lock:
                    outcomes.append(answer.status_code)
                    if answer.headers.get("content-type") != "application/ocsp-response":
                        failures.append(f"OCSP {issuer_id}: {answer.status_code} {answer.text}")
                        continue
                    status = ocsp.load_der_ocsp_response(answer.content).response_status
                    if status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
                        failures.append(f"OCSP {issuer_id}: {status}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in ("corp", "local", "corp")]
    for thread in threads:
        thread.start()
    generations = []
    try:
        for round_ in range(6):
            corp = server.put("corp", stepca_body(stepca, timeout_seconds=6 - round_ % 2))
            local = server.put(
                "local", localca_body(tmp_path / "state", validity_days=30 + round_ % 2)
            )
            assert corp.status_code == 200, corp.text
            assert local.status_code == 200, local.text
            generations.append(corp.json()["status"]["generation"])
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert len(outcomes) > 12
    assert set(outcomes) == {200, 201}
    # Every PUT swapped in a new connector (generations are numbered across issuers).
    assert generations == sorted(set(generations))
    assert generations[0] > 1


def test_restart_keeps_configs_and_revocations(server: Server, stepca: CA, tmp_path: Path) -> None:
    server.put("corp", stepca_body(stepca))
    server.put("local", localca_body(tmp_path / "state"))
    revoked = {}
    for issuer_id in ("corp", "local"):
        issued = issue(server, issuer_id)
        with server.client() as client:
            response = client.post(
                f"/api/v1/issuers/{issuer_id}/revocations",
                json={"serial": "0x" + issued["serial"], "reason": "superseded"},
            )
        assert response.status_code == 201
        revoked[issuer_id] = issued["serial"]
    with server.client() as client:
        before = client.get("/api/v1/issuers").json()
    server.restart()
    with server.client() as client:
        after = client.get("/api/v1/issuers").json()
    for view in (*before["issuers"], *after["issuers"]):
        view["status"].pop("generation")
        view["status"].pop("ocsp_error")
    assert after == before
    for issuer_id, serial in revoked.items():
        answer = httpx.get(f"{ocsp_url(server, issuer_id)}/{serial}", trust_env=False)
        parsed = ocsp.load_der_ocsp_response(answer.content)
        assert parsed.certificate_status is ocsp.OCSPCertStatus.REVOKED, issuer_id
        issue(server, issuer_id)  # the sealed secrets decrypted: the connectors work


def test_issuer_that_cannot_be_built_at_start_is_reported_and_others_serve(
    server: Server, stepca: CA, tmp_path: Path
) -> None:
    key_copy = tmp_path / "provisioner.json"
    key_copy.write_bytes(stepca.key_file.read_bytes())
    server.put("corp", stepca_body(stepca, provisioner_key_path=str(key_copy)))
    server.put("local", localca_body(tmp_path / "state"))
    server.stop()
    key_copy.unlink()
    server.start()
    with server.client() as client:
        corp = client.get("/api/v1/issuers/corp").json()
        response = client.post("/api/v1/issuers/corp/certificates", json={"csr": make_csr()[0]})
    assert corp["status"]["serving"] is False
    assert "provisioner_key_path" in corp["status"]["error"]
    assert response.status_code == 503
    assert response.headers["retry-after"]
    issue(server, "local")
    answer = httpx.get(f"{ocsp_url(server, 'corp')}/01", trust_env=False)
    assert (
        ocsp.load_der_ocsp_response(answer.content).response_status
        is ocsp.OCSPResponseStatus.UNAUTHORIZED
    )
    # Fixing the config through PUT brings it back. The key path changes, so the password
    # is sent again: a placeholder cannot follow it to another key (ADR 0022).
    fixed = stepca_body(stepca)
    masked = {**fixed, "config": {**fixed["config"], "provisioner_password": "********"}}
    assert server.put("corp", masked).status_code == 422
    assert server.put("corp", fixed).status_code == 200
    issue(server, "corp")


def test_sigterm_stops_the_server_cleanly(tmp_path: Path) -> None:
    server = Server(tmp_path)
    server.start()
    code = server.stop()
    log = server.log_text()
    assert code in (0, -15), log
    assert "Application shutdown complete" in log
    assert "Traceback" not in log
