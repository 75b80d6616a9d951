"""``certctl serve`` and ``--data-dir``: the CLI on the reference server's books.

The server runs as ``certctl serve`` in a subprocess; the issuer is configured through
its API; ``certctl issue/revoke --data-dir`` record in its ledger; ``openssl ocsp``
asks its OCSP endpoint (a delegated responder certificate from step-ca itself).
"""

from __future__ import annotations

import json
import re
import secrets
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.cli.conftest import (
    CERTCTL,
    PASSWORD,
    RESPONDER,
    StepCASetup,
    certctl,
    clean_env,
    openssl,
)


class Serve:
    """A running ``certctl serve`` with its data directory and API token."""

    def __init__(self, directory: Path, *extra: str) -> None:
        self.data_dir = directory / "data"
        self.token = secrets.token_urlsafe(24)
        self.token_file = directory / "token"
        self.token_file.write_text(self.token + "\n")
        self.log = directory / "serve.log"
        argv = [
            str(CERTCTL),
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--port",
            "0",
            "--api-token-file",
            str(self.token_file),
            *extra,
        ]
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=log, text=True, env=clean_env()
            )
        assert self.process.stdout is not None
        self.first_line = self.process.stdout.readline()
        found = re.search(r"(http://127\.0\.0\.1:\d+)", self.first_line)
        assert found, self.first_line + self.log.read_text()
        self.url = found.group(1)

    def put(self, issuer_id: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.put(
            f"{self.url}/api/v1/issuers/{issuer_id}",
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
            trust_env=False,
        )

    def stop(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGTERM)
        rest, _ = self.process.communicate(timeout=60)
        return self.process.returncode, self.first_line + rest


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    server = Serve(tmp_path)
    yield server
    if server.process.poll() is None:
        server.stop()


def _stepca_body(stepca: StepCASetup, *, responder: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "stepca", "config": stepca.settings()}
    if responder:
        body["ocsp_responder"] = {"config": {"provisioner_name": RESPONDER}}
    return body


def _ocsp(serve: Serve, stepca: StepCASetup, tmp_path: Path, cert: Path, issuer: str) -> str:
    intermediate = x509.load_pem_x509_certificates(cert.read_bytes())[1]
    (tmp_path / "issuer.pem").write_bytes(intermediate.public_bytes(Encoding.PEM))
    done = openssl(
        "ocsp",
        "-issuer",
        tmp_path / "issuer.pem",
        "-cert",
        cert,
        "-CAfile",
        stepca.root,
        "-url",
        f"{serve.url}/.well-known/pki/ocsp/{issuer}",
    )
    return done.stdout + done.stderr


@pytest.mark.stepca
def test_revocation_through_cli_shows_at_server_ocsp_when_data_dir_shared(
    serve: Serve, stepca: StepCASetup, tmp_path: Path
) -> None:
    assert serve.put("corp", _stepca_body(stepca)).status_code == 201
    books = ("--data-dir", str(serve.data_dir), "--issuer-id", "corp")
    issued = certctl(
        "issue",
        *books,
        "--cn",
        "o.cli.test",
        "--key-out",
        tmp_path / "o.key",
        "--out",
        tmp_path / "o.pem",
        "--json",
    )
    assert issued.code == 0, issued
    assert issued.json()["ledger"]["recorded"] is True
    assert "stored" not in issued.stderr

    before = _ocsp(serve, stepca, tmp_path, tmp_path / "o.pem", "corp")
    assert "Response verify OK" in before, before
    assert f"{tmp_path / 'o.pem'}: good" in before

    revoked = certctl("revoke", *books, "--cert", tmp_path / "o.pem", "--reason", "superseded")
    assert revoked.code == 0, revoked
    assert "ledger    recorded" in revoked.stdout

    after = _ocsp(serve, stepca, tmp_path, tmp_path / "o.pem", "corp")
    assert "Response verify OK" in after, after
    assert f"{tmp_path / 'o.pem'}: revoked" in after
    assert "Reason: superseded" in after

    status = certctl("status", *books, "--cert", tmp_path / "o.pem", "--json")
    assert status.code == 0, status
    assert (status.json()["state"], status.json()["source"]) == ("revoked", "ledger")


@pytest.mark.stepca
def test_data_dir_issuer_is_the_stored_one_when_type_also_given(
    serve: Serve, stepca: StepCASetup, tmp_path: Path
) -> None:
    assert serve.put("corp", _stepca_body(stepca, responder=False)).status_code == 201
    config = stepca.config_file(tmp_path / "other.json")
    run = certctl(
        "check",
        "--data-dir",
        serve.data_dir,
        "--issuer-id",
        "corp",
        "--type",
        "stepca",
        "--config",
        config,
    )
    assert run.code == 2, run
    assert "is stored in" in run.stderr
    stored = certctl("check", "--data-dir", serve.data_dir, "--issuer-id", "corp")
    assert stored.code == 0, stored
    assert "settings from the server's store in" in stored.stdout
    missing = certctl("check", "--data-dir", serve.data_dir, "--issuer-id", "nobody")
    assert missing.code == 2
    assert "no issuer 'nobody' is stored" in missing.stderr


def test_data_dir_that_is_not_a_store_is_refused_and_not_created(tmp_path: Path) -> None:
    run = certctl("revoke", "--data-dir", tmp_path / "nothing", "--issuer-id", "x", "--serial", "5")
    assert run.code == 2, run
    assert "is not a certctl data directory" in run.stderr
    assert not (tmp_path / "nothing").exists()


def test_serve_stops_cleanly_and_never_prints_its_token_when_terminated(serve: Serve) -> None:
    health = httpx.get(f"{serve.url}/api/v1/issuers", trust_env=False)
    assert health.status_code == 401  # the API wants the token
    code, out = serve.stop()
    assert code == 0, out + serve.log.read_text()
    assert "certctl: serving http://127.0.0.1:" in out
    assert "certctl: server stopped (SIGTERM)" in out
    assert serve.token not in out + serve.log.read_text()


def test_serve_json_announces_one_line_when_listening(tmp_path: Path) -> None:
    server = Serve(tmp_path, "--json")
    doc = json.loads(server.first_line)
    assert doc["listening"] == server.url
    assert doc["ocsp"].endswith("/.well-known/pki/ocsp/<issuer>")
    code, _ = server.stop()
    assert code == 0


def test_serve_without_token_exits_2_with_the_problem(tmp_path: Path) -> None:
    run = certctl("serve", "--data-dir", tmp_path / "d", "--port", "0")
    assert run.code == 2, run
    assert "api_tokens" in run.stderr and "no API token" in run.stderr


def test_no_provisioner_password_in_outputs_when_issuer_stored(
    serve: Serve, stepca: StepCASetup, tmp_path: Path
) -> None:
    body = _stepca_body(stepca)
    body["config"] = stepca.settings(provisioner_password=PASSWORD, provisioner_password_file=None)
    assert serve.put("inline", body).status_code == 201
    runs = [
        certctl("-vv", "check", "--data-dir", serve.data_dir, "--issuer-id", "inline", "--json"),
        certctl(
            "-vv",
            "issue",
            "--data-dir",
            serve.data_dir,
            "--issuer-id",
            "inline",
            "--cn",
            "p.cli.test",
            "--key-out",
            tmp_path / "p.key",
            "--out",
            tmp_path / "p.pem",
        ),
    ]
    assert [r.code for r in runs] == [0, 0], [str(r) for r in runs]
    for run in runs:
        assert PASSWORD not in run.output
        assert serve.token not in run.output


def test_serve_exits_2_naming_the_address_when_port_is_taken(serve: Serve, tmp_path: Path) -> None:
    port = serve.url.rsplit(":", 1)[1]
    run = certctl(
        "serve",
        "--data-dir",
        tmp_path / "other",
        "--port",
        port,
        "--api-token-file",
        serve.token_file,
    )
    assert run.code == 2, run
    assert f"could not listen on 127.0.0.1:{port}" in run.stderr
    assert serve.process.poll() is None  # the first server is untouched


def test_data_dir_refuses_a_stored_local_ca_issuer(serve: Serve, tmp_path: Path) -> None:
    body = {
        "type": "localca",
        "config": {"state_dir": str(tmp_path / "state"), "key_password": "x" * 24},
    }
    assert serve.put("local", body).status_code == 201
    run = certctl(
        "issue",
        "--data-dir",
        serve.data_dir,
        "--issuer-id",
        "local",
        "--cn",
        "x.test",
        "--key-out",
        tmp_path / "x.key",
        "--out",
        tmp_path / "x.pem",
    )
    assert run.code == 2, run
    assert "which only the server may run" in run.stderr
    assert "POST /api/v1/issuers/local/certificates" in run.stderr
    assert not (tmp_path / "x.pem").exists()
    assert "x" * 24 not in run.output


@pytest.mark.stepca
def test_data_dir_refuses_type_and_config_whose_default_id_is_stored(
    serve: Serve, stepca: StepCASetup, tmp_path: Path
) -> None:
    # Without --issuer-id the id is the type name: "stepca" is stored, so a config of
    # another CA must not be recorded under it.
    assert serve.put("stepca", _stepca_body(stepca, responder=False)).status_code == 201
    config = stepca.config_file(tmp_path / "other.json")
    run = certctl(
        "issue",
        "--data-dir",
        serve.data_dir,
        "--type",
        "stepca",
        "--config",
        config,
        "--cn",
        "y.test",
        "--key-out",
        tmp_path / "y.key",
        "--out",
        tmp_path / "y.pem",
    )
    assert run.code == 2, run
    assert "issuer 'stepca' is stored in" in run.stderr
    assert not (tmp_path / "y.pem").exists()


def test_revoke_with_remove_from_crl_is_refused(localca_config: Path) -> None:
    run = certctl(
        "revoke",
        "--type",
        "localca",
        "--config",
        localca_config,
        "--serial",
        "0x05",
        "--reason",
        "removeFromCRL",
    )
    assert run.code == 2, run
    assert "only for delta CRLs" in run.stderr


def test_second_serve_on_the_same_data_dir_says_why(serve: Serve, tmp_path: Path) -> None:
    run = certctl(
        "serve",
        "--data-dir",
        serve.data_dir,
        "--port",
        "0",
        "--api-token-file",
        serve.token_file,
        timeout=60,
    )
    assert run.code == 2, run
    assert "in use by another certctl server" in run.stderr
    assert "port" not in run.stderr
    assert serve.process.poll() is None  # the first one serves on
