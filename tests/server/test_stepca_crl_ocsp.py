"""OCSP for a step-ca that publishes a CRL: revocations made at the CA, past certctl, count.

step-ca publishes CRLs from v0.23; Debian's 0.20 has none, so ``/1.0/crl`` alone is
served by the test (a CRL signed with the real intermediate's key); everything else is
the real step-ca.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from certctl_core import ConnectorRegistrar, ConnectorType, hookimpl
from certctl_core.host import PluginHost
from certctl_host.server import ServerSettings, create_app
from certctl_stepca import build_stepca_issuer
from certctl_stepca.testing import Fault, FaultProxy, Replacement
from tests.server.conftest import CA, TOKEN, make_csr, stepca_body

pytestmark = pytest.mark.anyio

AUTH = {"Authorization": f"Bearer {TOKEN}"}


class PublishedCRL:
    """The CRL the CA publishes: the serials revoked at the CA."""

    def __init__(self, ca: CA) -> None:
        self.ca = ca
        self.revoked: dict[int, x509.ReasonFlags] = {}
        self.fetches = 0

    def der(self) -> bytes:
        pki = self.ca.process.pki
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(pki.intermediate_cert.subject)
            .last_update(now - dt.timedelta(minutes=1))
            .next_update(now + dt.timedelta(hours=1))
        )
        for serial, reason in self.revoked.items():
            entry = (
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(now - dt.timedelta(seconds=30))
                .add_extension(x509.CRLReason(reason), critical=False)
                .build()
            )
            builder = builder.add_revoked_certificate(entry)
        crl = builder.sign(pki.intermediate_key, hashes.SHA256())
        return crl.public_bytes(serialization.Encoding.DER)


class StepCAWithCRL:
    """The step-ca connector type, talking to the CA through a fault proxy that serves
    the published CRL (step-ca 0.19/0.20 have none); everything else is forwarded."""

    def __init__(self, published: PublishedCRL, proxy: FaultProxy) -> None:
        self.published = published
        self.proxy = proxy

        def crl() -> Replacement:  # called per request, in the proxy's thread
            published.fetches += 1
            return Replacement(
                200, headers=(("content-type", "application/pkix-crl"),), chunk=published.der()
            )

        proxy.inject(Fault.REPLACE, path="/1.0/crl", replacement=crl)

    @hookimpl
    def certctl_register_connectors(self, registrar: ConnectorRegistrar) -> None:
        async def factory(issuer_id: str, config: Mapping[str, Any]) -> Any:
            proxied = {**config, "ca_url": self.proxy.url}
            return await build_stepca_issuer(issuer_id, proxied, env={})

        registrar.add(
            ConnectorType(
                name="stepca",
                factory=factory,
                secret_fields=frozenset({"provisioner_password"}),
            )
        )


async def _status(http: httpx.AsyncClient, serial: int) -> ocsp.OCSPResponse:
    answer = await http.get(f"/.well-known/pki/ocsp/corp/{serial:x}")
    assert answer.status_code == 200
    parsed = ocsp.load_der_ocsp_response(answer.content)
    assert parsed.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    return parsed


async def test_serial_revoked_at_the_ca_is_revoked_over_ocsp(
    stepca: CA, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    published = PublishedCRL(stepca)
    proxy = FaultProxy.for_stepca(stepca.process, tmp_path / "proxy")
    proxy.start()
    request.addfinalizer(proxy.stop)
    settings = ServerSettings.from_mapping(
        {"data_dir": str(tmp_path / "data"), "api_tokens": [TOKEN]}, {}
    )
    app: Any = create_app(
        settings,
        plugins=lambda: PluginHost.from_plugins({"stepca": StepCAWithCRL(published, proxy)}),
    )
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=transport, base_url="http://certctl.test", headers=AUTH
        ) as http,
    ):
        put = await http.put("/api/v1/issuers/corp", json=stepca_body(stepca, crl_enabled=True))
        assert put.status_code in (200, 201), put.text
        serials = []
        for name in ("a.example.test", "b.example.test"):
            csr_pem, _ = make_csr(name)
            issued = await http.post("/api/v1/issuers/corp/certificates", json={"csr": csr_pem})
            assert issued.status_code == 201, issued.text
            pem = issued.json()["certificate"].encode()
            serials.append(x509.load_pem_x509_certificate(pem).serial_number)
        revoked_at_ca, untouched = serials
        # Revoked with `step ca revoke`, not through certctl: only the CA's CRL knows.
        published.revoked[revoked_at_ca] = x509.ReasonFlags.key_compromise

        answer = await _status(http, revoked_at_ca)
        assert answer.certificate_status is ocsp.OCSPCertStatus.REVOKED
        assert answer.revocation_reason is x509.ReasonFlags.key_compromise
        assert (await _status(http, untouched)).certificate_status is ocsp.OCSPCertStatus.GOOD
        # The CRL itself is served too, and fetched once for all of the above.
        crl = await http.get("/.well-known/pki/crl/corp")
        assert crl.status_code == 200
        assert x509.load_der_x509_crl(crl.content).get_revoked_certificate_by_serial_number(
            revoked_at_ca
        )
        assert published.fetches == 1
