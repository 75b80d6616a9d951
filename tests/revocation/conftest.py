"""A real step-ca with an OCSP-responder provisioner, and openssl helpers."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certctl_stepca import StepCAIssuer, build_stepca_issuer
from certctl_stepca.testing import (
    OCSP_RESPONDER_TEMPLATE,
    StepCA,
    make_provisioner_key,
    provisioner_entry,
)

PASSWORD = "responder test password"


class ResponderCA:
    """step-ca with ``certctl`` (leaf certificates) and ``ocsp-responder`` provisioners."""

    def __init__(self, process: StepCA, directory: Path) -> None:
        self.process = process
        self.directory = directory

    def config(self, provisioner: str = "certctl", **overrides: Any) -> dict[str, Any]:
        config: dict[str, Any] = {
            "ca_url": self.process.url,
            "provisioner_name": provisioner,
            "provisioner_key_path": str(self.directory / f"{provisioner}.json"),
            "provisioner_password_file": str(self.directory / "password.txt"),
            "root_cert_path": str(self.process.root_file),
            "max_retries": 0,
            "timeout_seconds": 5,
        }
        config.update(overrides)
        return config


@pytest.fixture(scope="session")
def responder_ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ResponderCA]:
    directory = tmp_path_factory.mktemp("responder-ca")
    leaf_key = make_provisioner_key("certctl", PASSWORD)
    ocsp_key = make_provisioner_key("ocsp-responder", PASSWORD)
    leaf_key.write_key_file(directory / "certctl.json")
    ocsp_key.write_key_file(directory / "ocsp-responder.json")
    leaf_key.write_password_file(directory / "password.txt")
    process = StepCA.create(
        directory / "ca",
        provisioners=[
            provisioner_entry(leaf_key),
            provisioner_entry(ocsp_key, x509_template=OCSP_RESPONDER_TEMPLATE),
        ],
    )
    with process:
        yield ResponderCA(process, directory)


@pytest.fixture
async def connectors(responder_ca: ResponderCA) -> AsyncIterator[dict[str, StepCAIssuer]]:
    """Two connectors on one step-ca: ``leaf`` issues certificates, ``responder`` responder
    certificates."""
    built = {
        "leaf": await build_stepca_issuer("corp", responder_ca.config(), env={}),
        "responder": await build_stepca_issuer(
            "corp", responder_ca.config("ocsp-responder"), env={}
        ),
    }
    yield built
    for issuer in built.values():
        await issuer.close()


def openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", *map(str, args)], capture_output=True, text=True, timeout=30, check=False
    )


def write_pem(path: Path, *certs: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    return path
