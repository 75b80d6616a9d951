"""A real step-ca for the connector tests, started by the tests themselves."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from certctl_stepca import StepCAIssuer, build_stepca_issuer
from certctl_stepca.testing import (
    FaultProxy,
    ProvisionerKey,
    StepCA,
    make_provisioner_key,
    provisioner_entry,
)

PASSWORD = "correct horse battery staple"
CLAIMS = {"minTLSCertDuration": "5m", "defaultTLSCertDuration": "24h", "maxTLSCertDuration": "48h"}


class CA:
    """The running step-ca plus the files an operator would configure."""

    def __init__(self, process: StepCA, key: ProvisionerKey, directory: Path) -> None:
        self.process = process
        self.key = key
        self.key_file = key.write_key_file(directory / "provisioner.json")
        self.password_file = key.write_password_file(directory / "password.txt")

    def config(self, **overrides: Any) -> dict[str, Any]:
        config: dict[str, Any] = {
            "ca_url": self.process.url,
            "provisioner_name": self.key.name,
            "provisioner_key_path": str(self.key_file),
            "provisioner_password_file": str(self.password_file),
            "root_cert_path": str(self.process.root_file),
            "max_retries": 1,
            "timeout_seconds": 5,
        }
        config.update(overrides)
        return {k: v for k, v in config.items() if v is not None}

    @property
    def private_d(self) -> str:
        return str(json.loads(self.key.private_jwk_json)["d"])


@pytest.fixture(scope="session")
def stepca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CA]:
    directory = tmp_path_factory.mktemp("stepca")
    key = make_provisioner_key("certctl", PASSWORD)
    process = StepCA.create(directory / "ca", provisioners=[provisioner_entry(key, claims=CLAIMS)])
    with process:
        yield CA(process, key, directory)


BuildIssuer = Callable[..., Any]


@pytest.fixture
async def make_issuer(stepca: CA) -> AsyncIterator[BuildIssuer]:
    built: list[StepCAIssuer] = []

    async def build(**overrides: Any) -> StepCAIssuer:
        issuer = await build_stepca_issuer("test-issuer", stepca.config(**overrides), env={})
        built.append(issuer)
        return issuer

    yield build
    for issuer in built:
        await issuer.close()


@pytest.fixture
async def issuer(make_issuer: BuildIssuer) -> StepCAIssuer:
    result: StepCAIssuer = await make_issuer()
    return result


@pytest.fixture
def proxy(stepca: CA, tmp_path: Path) -> Iterator[FaultProxy]:
    """A TLS fault proxy in front of the session's step-ca (configure ``ca_url=proxy.url``)."""
    with FaultProxy.for_stepca(stepca.process, tmp_path / "proxy") as running:
        yield running
