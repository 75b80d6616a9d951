"""Issuance against a real step-ca: SAN types, key types, lifetimes, chains (openssl too)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import subprocess
from pathlib import Path

import pytest

from certctl_core import CertificateRequest, PolicyViolationError, Profile
from certctl_core.host import PluginHost, Registry
from certctl_stepca import StepCAIssuer
from tests.csr import make_csr, make_request, new_key, pem
from tests.stepca.conftest import CA, BuildIssuer

pytestmark = [pytest.mark.anyio, pytest.mark.stepca]


def openssl_verify(tmp_path: Path, stepca: CA, chain_pem: str) -> subprocess.CompletedProcess[str]:
    leaf, *intermediates = chain_pem.split("-----END CERTIFICATE-----\n")[:-1]
    (tmp_path / "leaf.pem").write_text(leaf + "-----END CERTIFICATE-----\n")
    (tmp_path / "inter.pem").write_text(
        "".join(i + "-----END CERTIFICATE-----\n" for i in intermediates)
    )
    return subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(stepca.process.root_file),
            "-untrusted",
            str(tmp_path / "inter.pem"),
            str(tmp_path / "leaf.pem"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("kind", ["ec", "rsa"])
async def test_issue_returns_verified_chain_with_all_san_types_when_csr_has_them(
    issuer: StepCAIssuer, stepca: CA, tmp_path: Path, kind: str
) -> None:
    request = CertificateRequest.from_csr(
        make_csr(
            cn="svc.example.test",
            dns=("svc.example.test", "alt.example.test"),
            ips=("127.0.0.1", "::1"),
            emails=("ops@example.test",),
            uris=("spiffe://example.test/svc",),
            key=new_key(kind),
        )
    )
    issued = await issuer.issue(request)

    assert issued.sans.dns == ("svc.example.test", "alt.example.test")
    assert set(issued.sans.ips) == {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    assert issued.sans.emails == ("ops@example.test",)
    assert issued.sans.uris == ("spiffe://example.test/svc",)
    assert len(issued.chain) == 2
    issued.chain[1].verify_directly_issued_by(stepca.process.pki.root_cert)
    issued.certificate.verify_directly_issued_by(issued.chain[1])
    assert issued.serial > 0
    assert issued.serial_decimal == str(issued.serial)
    result = openssl_verify(tmp_path, stepca, issued.chain_pem)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("leaf.pem: OK")


async def test_issue_uses_provisioner_default_when_nothing_is_configured(
    issuer: StepCAIssuer,
) -> None:
    issued = await issuer.issue(make_request())
    lifetime = issued.not_after - dt.datetime.now(dt.UTC)
    assert dt.timedelta(hours=23, minutes=58) < lifetime <= dt.timedelta(hours=24, minutes=1)


async def test_issue_honours_validity_days_when_configured(make_issuer: BuildIssuer) -> None:
    issuer = await make_issuer(validity_days=0.5)
    issued = await issuer.issue(make_request())
    lifetime = issued.not_after - dt.datetime.now(dt.UTC)
    assert dt.timedelta(hours=11, minutes=58) < lifetime <= dt.timedelta(hours=12, minutes=1)


async def test_registry_caps_lifetime_by_profile_max_ttl_when_shorter_than_default(
    stepca: CA,
) -> None:
    host = PluginHost.discover()
    async with Registry(host) as registry:
        await registry.build("step", "stepca", stepca.config(validity_days=1))
        for validity in (None, dt.timedelta(hours=20)):
            request = make_request(profile=Profile("short", dt.timedelta(hours=1)))
            if validity:
                request = CertificateRequest.from_csr(
                    request.csr, profile=request.profile, validity=validity
                )
            issued = await registry.issue("step", request)
            lifetime = issued.not_after - dt.datetime.now(dt.UTC)
            assert dt.timedelta(minutes=58) < lifetime <= dt.timedelta(hours=1, minutes=1)


async def test_issue_is_refused_locally_with_the_limit_when_over_provisioner_max(
    make_issuer: BuildIssuer,
) -> None:
    issuer = await make_issuer(validity_days=30)
    with pytest.raises(PolicyViolationError) as caught:
        await issuer.issue(make_request())
    text = str(caught.value)
    assert "48:00:00" in text or "2 days" in text
    assert "maximum" in text
    assert caught.value.status is None  # decided here, no token spent


async def test_issue_is_refused_locally_when_under_provisioner_min(issuer: StepCAIssuer) -> None:
    request = CertificateRequest.from_csr(make_csr(), validity=dt.timedelta(minutes=1))
    with pytest.raises(PolicyViolationError, match="minimum"):
        await issuer.issue(request)


async def test_issue_serials_are_unique_over_concurrent_issuances(issuer: StepCAIssuer) -> None:
    import asyncio

    results = await asyncio.gather(*(issuer.issue(make_request()) for _ in range(40)))
    assert len({r.serial for r in results}) == 40
    assert all(0 < r.serial < 1 << 160 for r in results)


async def test_ca_chain_ends_with_the_pinned_root(issuer: StepCAIssuer, stepca: CA) -> None:
    await issuer.issue(make_request())
    chain = await issuer.ca_chain()
    assert chain[-1] == stepca.process.pki.root_cert
    assert pem(chain[0]) == stepca.process.pki.intermediate_pem
