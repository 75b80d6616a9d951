"""Fixtures for the server tests: a real step-ca (with an OCSP-responder provisioner), the
real server in a subprocess on a loopback port, CSRs, and a runner for ``openssl``."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certctl_stepca.testing import (
    OCSP_RESPONDER_TEMPLATE,
    StepCA,
    make_provisioner_key,
    provisioner_entry,
)
from tests.stepca.conftest import CA as StepCAFiles
from tests.stepca.conftest import PASSWORD as PASSWORD

LOCALCA_PASSWORD = "local ca key password 0123456789"
TOKEN = "test-api-token-" + "x" * 24
CLAIMS = {"minTLSCertDuration": "5m", "defaultTLSCertDuration": "24h", "maxTLSCertDuration": "48h"}
RESPONDER_PROVISIONER = "ocsp-responder"


class CA(StepCAFiles):
    """The step-ca connector tests' CA, configured with the password inline, as an API
    client would send it (the server seals it at rest)."""

    def config(self, **overrides: Any) -> dict[str, Any]:
        inline = {"provisioner_password": PASSWORD, "provisioner_password_file": None}
        return super().config(**{**inline, **overrides})


@pytest.fixture(scope="session")
def stepca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CA]:
    directory = tmp_path_factory.mktemp("server-stepca")
    key = make_provisioner_key("certctl", PASSWORD)
    responder = provisioner_entry(key, claims=CLAIMS, x509_template=OCSP_RESPONDER_TEMPLATE)
    responder["name"] = RESPONDER_PROVISIONER
    process = StepCA.create(
        directory / "ca", provisioners=[provisioner_entry(key, claims=CLAIMS), responder]
    )
    with process:
        yield CA(process, key, directory)


def stepca_body(ca: CA, *, responder: bool = True, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "stepca", "config": ca.config(**overrides)}
    if responder:
        body["ocsp_responder"] = {"config": {"provisioner_name": RESPONDER_PROVISIONER}}
    return body


def localca_body(state_dir: Path, **extra: Any) -> dict[str, Any]:
    return {
        "type": "localca",
        "config": {"state_dir": str(state_dir), "key_password": LOCALCA_PASSWORD, **extra},
    }


class Server:
    """``python -m certctl_host.server`` in a subprocess, on a free loopback port."""

    def __init__(self, directory: Path, **settings: Any) -> None:
        self.directory = directory
        self.data_dir = directory / "data"
        self.settings = {
            "data_dir": str(self.data_dir),
            "api_tokens": [TOKEN],
            "port": 0,
            "log_level": "debug",
            **settings,
        }
        self.settings_file = directory / "settings.json"
        self.log_file = directory / "server.log"
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CERTCTL_")}

    def start(self) -> None:
        self.settings_file.write_text(json.dumps(self.settings))
        log = self.log_file.open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "certctl_host.server", str(self.settings_file)],
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            text=True,
            env=self.env,
        )
        log.close()
        assert self.process.stdout is not None
        line = _readline(self.process.stdout, timeout=60)
        if not line.startswith("listening on "):
            self.process.kill()
            self.process.wait()
            raise RuntimeError(f"server did not start: {line!r}\n{self.log_text()}")
        self.url = line.split()[-1]
        # Keep reading stdout (uvicorn's access log): a full pipe would block the server.
        stream, path = self.process.stdout, self.directory / "access.log"
        threading.Thread(target=_drain, args=(stream, path), daemon=True).start()

    def access_log(self) -> str:
        path = self.directory / "access.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> int:
        if self.process is None:
            return 0
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None
        return code

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        return self.log_file.read_text() if self.log_file.exists() else ""

    def client(self, *, token: str | None = TOKEN, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers.update(kwargs.pop("headers", {}))
        return httpx.Client(
            base_url=self.url, headers=headers, timeout=30, trust_env=False, **kwargs
        )

    def put(self, issuer_id: str, body: dict[str, Any]) -> httpx.Response:
        with self.client() as client:
            return client.put(f"/api/v1/issuers/{issuer_id}", json=body)


def _drain(stream: IO[str], path: Path) -> None:
    with path.open("a") as sink, contextlib.suppress(ValueError, OSError):
        for line in stream:
            sink.write(line)
            sink.flush()


def _readline(stream: Any, timeout: float) -> str:
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return result[0].strip() if result else "<no output>"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path)
    running.start()
    yield running
    running.stop()


def make_csr(name: str = "svc.example.test") -> tuple[str, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode(), key


def issue(server: Server, issuer_id: str, name: str = "svc.example.test") -> dict[str, Any]:
    csr, _ = make_csr(name)
    with server.client() as client:
        response = client.post(f"/api/v1/issuers/{issuer_id}/certificates", json={"csr": csr})
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def openssl(args: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["openssl", *args], capture_output=True, text=True, check=False, timeout=60
    )
    if check:
        assert result.returncode == 0, f"openssl {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result


def random_token() -> str:
    return secrets.token_urlsafe(32)
