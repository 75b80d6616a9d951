"""A step-ca of the reliability tests' own (they kill it) behind a fault proxy."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from certctl_stepca import StepCAIssuer, build_stepca_issuer
from certctl_stepca.testing import (
    FaultProxy,
    ProvisionerKey,
    StepCA,
    make_provisioner_key,
    provisioner_entry,
)

PASSWORD = "reliability: correct horse battery staple"
CLAIMS = {"minTLSCertDuration": "5m", "defaultTLSCertDuration": "24h", "maxTLSCertDuration": "48h"}


class FaultyCA:
    """A real step-ca, a fault proxy in front of it, and the operator's files."""

    def __init__(self, process: StepCA, proxy: FaultProxy, key: ProvisionerKey, directory: Path):
        self.process = process
        self.proxy = proxy
        self.key = key
        self.key_file = key.write_key_file(directory / "provisioner.json")
        self.password_file = key.write_password_file(directory / "password.txt")

    def config(self, *, direct: bool = False, **overrides: Any) -> dict[str, Any]:
        config: dict[str, Any] = {
            "ca_url": self.process.url if direct else self.proxy.url,
            "provisioner_name": self.key.name,
            "provisioner_key_path": str(self.key_file),
            "provisioner_password_file": str(self.password_file),
            "root_cert_path": str(self.process.root_file),
            "max_retries": 2,
            "timeout_seconds": 2,
        }
        config.update(overrides)
        return {k: v for k, v in config.items() if v is not None}

    @property
    def private_d(self) -> str:
        return str(json.loads(self.key.private_jwk_json)["d"])


@pytest.fixture
def faulty(tmp_path: Path) -> Iterator[FaultyCA]:
    """A fresh step-ca per test (tests kill and restart it) behind a fresh proxy."""
    key = make_provisioner_key("certctl-rel", PASSWORD)
    process = StepCA.create(tmp_path / "ca", provisioners=[provisioner_entry(key, claims=CLAIMS)])
    with process, FaultProxy.for_stepca(process, tmp_path / "proxy") as proxy:
        yield FaultyCA(process, proxy, key, tmp_path)


BuildIssuer = Callable[..., Any]


@pytest.fixture
async def make_faulty_issuer(faulty: FaultyCA) -> AsyncIterator[BuildIssuer]:
    built: list[StepCAIssuer] = []

    async def build(**overrides: Any) -> StepCAIssuer:
        issuer = await build_stepca_issuer("rel-issuer", faulty.config(**overrides), env={})
        built.append(issuer)
        return issuer

    yield build
    for issuer in built:
        await issuer.close()


def sockets_to(port: int) -> int:
    """Open TCP sockets of this process whose peer is ``port`` on loopback."""
    return sum(
        1
        for conn in psutil.Process().net_connections(kind="tcp")
        if conn.raddr and conn.raddr.port == port
    )


def other_tasks() -> set[asyncio.Task[Any]]:
    """Tasks of the running loop other than the current one."""
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()}
