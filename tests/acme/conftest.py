"""Real ACME servers for the ACME connector's tests: step-ca's ACME provisioner and Pebble.

step-ca validates http-01 on port 80 of the identifier (tests run as root, as CI does):
the connector's own responder listens there. Pebble resolves every name through
pebble-challtestsrv (127.0.0.1) and validates http-01 on its configured ``httpPort``.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from certctl_acme import AcmeIssuer, build_acme_issuer
from certctl_acme.testing import ChallTestSrv, Pebble
from certctl_contracts.csr import build_csr, new_private_key
from certctl_core import CertificateRequest, SubjectAltNames
from certctl_stepca.testing import StepCA, acme_provisioner_entry, generate_pki

HERE = Path(__file__).resolve().parent
DNS_HOOK = f"{sys.executable} {HERE / 'dns_hook.py'}"
#: What dns_hook.py needs from the test's environment (the connector passes nothing else).
HOOK_ENV = ["HOOK_LOG", "CHALLTESTSRV_URL", "HOOK_FAIL", "HOOK_FAIL_OUTPUT"]
CLAIMS = {"minTLSCertDuration": "5m", "maxTLSCertDuration": "24h", "defaultTLSCertDuration": "24h"}


def request_for(*names: str, key_kind: str = "ec-p256") -> CertificateRequest:
    """A CSR for DNS names and IP addresses (CN: the first DNS name, if any)."""
    dns: list[str] = []
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for name in names:
        try:
            ips.append(ipaddress.ip_address(name))
        except ValueError:
            dns.append(name)
    csr, _key = build_csr(
        SubjectAltNames(dns=tuple(dns), ips=tuple(ips)),
        common_name=next((d for d in dns if not d.startswith("*")), None),
        key=new_private_key(key_kind),  # type: ignore[arg-type]
    )
    return CertificateRequest.from_csr(csr)


class StepCAAcme:
    def __init__(self, process: StepCA) -> None:
        self.process = process

    def config(self, provisioner: str = "acme", **overrides: Any) -> dict[str, Any]:
        config: dict[str, Any] = {
            "directory_url": self.process.acme_directory_url(provisioner),
            "tls_root_path": str(self.process.root_file),
            "http_address": "*:80",
            "poll_interval_seconds": 0.05,
            "renewal_info": False,
        }
        config.update(overrides)
        return {k: v for k, v in config.items() if v is not None}


@pytest.fixture(scope="session")
def stepca_acme(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StepCAAcme]:
    directory = tmp_path_factory.mktemp("stepca-acme")
    process = StepCA.create(
        directory / "ca",
        pki=generate_pki(directory / "pki"),
        provisioners=[
            acme_provisioner_entry("acme", claims=CLAIMS),
            acme_provisioner_entry("acme-eab", claims=CLAIMS, require_eab=True),
        ],
    )
    with process:
        yield StepCAAcme(process)


class PebbleEnv:
    def __init__(self, pebble: Pebble, dns: ChallTestSrv) -> None:
        self.pebble = pebble
        self.dns = dns

    def config(self, **overrides: Any) -> dict[str, Any]:
        config: dict[str, Any] = {
            "directory_url": self.pebble.directory_url,
            "tls_root_path": str(self.pebble.tls_root),
            "terms_of_service_agreed": True,
            "http_address": f"127.0.0.1:{self.pebble.http_port}",
            "poll_interval_seconds": 0.05,
            "renewal_info": False,
        }
        config.update(overrides)
        return {k: v for k, v in config.items() if v is not None}


@pytest.fixture(scope="session")
def challtestsrv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChallTestSrv]:
    with ChallTestSrv.start(tmp_path_factory.mktemp("challtestsrv")) as server:
        yield server


@pytest.fixture(scope="session")
def pebble(
    tmp_path_factory: pytest.TempPathFactory, challtestsrv: ChallTestSrv
) -> Iterator[PebbleEnv]:
    with Pebble.start(
        tmp_path_factory.mktemp("pebble"),
        dns=challtestsrv,
        authz_reuse_percent=0,
        env={"PEBBLE_ALTERNATE_ROOTS": "1"},
    ) as running:
        yield PebbleEnv(running, challtestsrv)


BuildIssuer = Callable[..., Any]


@pytest.fixture
async def make_issuer() -> AsyncIterator[BuildIssuer]:
    built: list[AcmeIssuer] = []

    async def build(config: dict[str, Any], issuer_id: str = "acme-test") -> AcmeIssuer:
        issuer = await build_acme_issuer(issuer_id, config)
        built.append(issuer)
        return issuer

    yield build
    for issuer in built:
        await issuer.close()
