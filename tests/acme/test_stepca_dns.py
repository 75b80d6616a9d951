"""step-ca's ACME provisioner with names it resolves through a test DNS server.

step-ca has no resolver setting: it runs in its own mount namespace whose
/etc/resolv.conf names pebble-challtestsrv on 127.0.0.1:53 (root, as CI runs), which
answers 127.0.0.1 for every name and serves the TXT records the dns-01 hook publishes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from certctl_acme.testing import ChallTestSrv
from certctl_stepca.testing import StepCA, acme_provisioner_entry
from tests.acme.conftest import CLAIMS, DNS_HOOK, HOOK_ENV, BuildIssuer, StepCAAcme, request_for

pytestmark = [pytest.mark.anyio, pytest.mark.acme]


@pytest.fixture(scope="module")
def dns53(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChallTestSrv]:
    with ChallTestSrv.start(tmp_path_factory.mktemp("dns53"), dns_port=53) as server:
        yield server


@pytest.fixture(scope="module")
def stepca_with_dns(
    tmp_path_factory: pytest.TempPathFactory, dns53: ChallTestSrv
) -> Iterator[StepCAAcme]:
    directory = tmp_path_factory.mktemp("stepca-dns")
    resolv = directory / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\n")
    process = StepCA.create(
        directory / "ca",
        provisioners=[acme_provisioner_entry("acme", claims=CLAIMS)],
        resolv_conf=resolv,
    )
    with process:
        yield StepCAAcme(process)


async def test_dns01_for_a_name_and_its_wildcard(
    stepca_with_dns: StepCAAcme,
    dns53: ChallTestSrv,
    make_issuer: BuildIssuer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = tmp_path / "hook.log"
    monkeypatch.setenv("CHALLTESTSRV_URL", dns53.management_url)
    monkeypatch.setenv("HOOK_LOG", str(log))
    issuer = await make_issuer(
        stepca_with_dns.config(challenge="dns-01", dns_hook=DNS_HOOK, dns_hook_env=HOOK_ENV)
    )
    request = request_for("dns.stepca.test", "*.dns.stepca.test")
    issued = await issuer.issue(request)
    assert issued.sans.same_as(request.sans)
    actions = sorted(line.split(" ")[0] for line in log.read_text().splitlines())
    assert actions == ["cleanup", "cleanup", "present", "present"]
    assert dns53.txt_queries("_acme-challenge.dns.stepca.test"), "step-ca never asked the DNS"


async def test_http01_for_a_name_resolved_by_the_test_dns(
    stepca_with_dns: StepCAAcme, make_issuer: BuildIssuer
) -> None:
    issuer = await make_issuer(stepca_with_dns.config())
    request = request_for("www.stepca.test")
    issued = await issuer.issue(request)
    assert issued.sans.same_as(request.sans)
