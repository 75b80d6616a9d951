"""Another process on the same data directory (the CLI, a replica): configs it writes are
picked up, revocations it records are answered by OCSP at once; a wrong key is refused."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography.x509 import ocsp

from certctl_host.storage import KEY_ENV, ServerKey
from tests.server.conftest import CA, LOCALCA_PASSWORD, Server, issue, make_csr, stepca_body
from tests.server.pki import ocsp_url

WRITE_CONFIG = """
import asyncio, json, sys
from certctl_host.storage import IssuerRecord, SQLiteStore

async def main():
    async with await SQLiteStore.open(sys.argv[1]) as store:
        await store.put_issuer(IssuerRecord("fromcli", "localca", json.loads(sys.argv[2])),
                               secret_fields=frozenset({"key_password"}))

asyncio.run(main())
"""

DELETE_CONFIG = """
import asyncio, sys
from certctl_host.storage import SQLiteStore

async def main():
    async with await SQLiteStore.open(sys.argv[1]) as store:
        assert await store.delete_issuer(sys.argv[2])

asyncio.run(main())
"""

REVOKE = """
import asyncio, datetime as dt, sys
from certctl_core import RevocationReason
from certctl_host.storage import SQLiteStore

async def main():
    async with await SQLiteStore.open(sys.argv[1]) as store:
        await store.record_revocation(sys.argv[2], int(sys.argv[3], 16),
                                      RevocationReason.KEY_COMPROMISE, dt.datetime.now(dt.UTC))

asyncio.run(main())
"""


def run(script: str, *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_config_written_by_another_process_is_served(server: Server, tmp_path: Path) -> None:
    config = {"state_dir": str(tmp_path / "state"), "key_password": LOCALCA_PASSWORD}
    run(WRITE_CONFIG, str(server.data_dir), json.dumps(config))
    deadline = time.monotonic() + 60  # a bound on waiting, not a speed assertion
    status = None
    with server.client() as client:
        while time.monotonic() < deadline:
            response = client.get("/api/v1/issuers/fromcli")
            if response.status_code == 200 and response.json()["status"]["serving"]:
                status = response.json()["status"]
                break
            time.sleep(0.2)
    assert status is not None, server.log_text()
    issue(server, "fromcli")

    # Deleted from the store by another process (the API has no DELETE): no longer served.
    run(DELETE_CONFIG, str(server.data_dir), "fromcli")
    csr = make_csr()[0]
    answer = None
    with server.client() as client:
        while time.monotonic() < deadline:
            answer = client.post("/api/v1/issuers/fromcli/certificates", json={"csr": csr})
            if answer.status_code != 201:
                break
            time.sleep(0.2)
    assert answer is not None and answer.status_code == 404, server.log_text()
    assert "removed from the store; no longer served" in server.log_text()


@pytest.mark.stepca
def test_revocation_recorded_by_another_process_is_answered(server: Server, stepca: CA) -> None:
    server.put("corp", stepca_body(stepca))
    issued = issue(server, "corp")
    url = f"{ocsp_url(server, 'corp')}/{issued['serial']}"
    before = ocsp.load_der_ocsp_response(httpx.get(url, trust_env=False).content)
    assert before.certificate_status is ocsp.OCSPCertStatus.GOOD
    run(REVOKE, str(server.data_dir), "corp", issued["serial"])
    after = ocsp.load_der_ocsp_response(httpx.get(url, trust_env=False).content)
    assert after.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert after.revocation_reason is not None


def test_wrong_server_key_stops_start_with_a_clear_message(tmp_path: Path) -> None:
    server = Server(tmp_path)
    server.start()
    server.stop()
    server.env[KEY_ENV] = other = ServerKey.generate_text()
    server.settings_file.write_text(json.dumps(server.settings))
    result = subprocess.run(
        [sys.executable, "-m", "certctl_host.server", str(server.settings_file)],
        capture_output=True,
        text=True,
        env=server.env,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert "server key" in result.stderr
    assert "Traceback" not in result.stderr
    assert other not in result.stderr + result.stdout
