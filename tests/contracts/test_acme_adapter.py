"""The contract suite against the ACME connector, driving a real Pebble.

One Pebble (Debian's package) serves the module; every test gets its own fault proxy
(the step-ca testing kit's, pointed at Pebble) and its own connector. Pebble runs with
``PEBBLE_VA_ALWAYS_VALID``: the contract's SANs include 192.0.2.10 and 2001:db8::10,
which no responder on this machine can answer for. The connector still runs its http-01
responder for every authorization; real validation is tested in tests/acme.

Side channels: the root is Pebble's ``/roots/0`` (management interface), revocations and
their reasons are Pebble's ``/cert-status-by-serial``. ACME certifies DNS names and IPs
only (``san_types``): email and URI SANs must be refused with InvalidRequestError.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from certctl_acme import build_acme_issuer, plugin
from certctl_acme._jose import generate_account_key
from certctl_acme.testing import Pebble
from certctl_contracts import IssuerContract, LiveIssuer
from certctl_core import IssuerPort, RevocationReason
from certctl_core.host import PluginHost
from certctl_stepca.testing import FaultProxy, ProxyFaults, Replacement

_BUSY = Replacement(
    status=503,
    headers=(("content-type", "application/problem+json"), ("retry-after", "1")),
    chunk=b'{"type":"urn:ietf:params:acme:error:serverInternal","detail":"busy","status":503}',
)


@pytest.fixture(scope="module")
def contract_pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    with Pebble.start(tmp_path_factory.mktemp("pebble"), always_valid=True) as pebble:
        yield pebble


class TestAcmeAdapter(IssuerContract):
    """The whole contract against Pebble through the ACME connector."""

    @pytest.fixture
    async def live_issuer(
        self, tmp_path: Path, contract_pebble: Pebble
    ) -> AsyncIterator[LiveIssuer]:
        pebble = contract_pebble
        upstream = ssl.create_default_context(cafile=str(pebble.tls_root))
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server.load_cert_chain(
            pebble.workdir / "tls" / "tls-cert.pem", pebble.workdir / "tls" / "tls-key.pem"
        )
        proxy = FaultProxy("127.0.0.1", pebble.port, upstream_ssl=upstream, server_ssl=server)
        proxy.start()
        chain = await asyncio.to_thread(pebble.write_issuing_chain, tmp_path / "chain.pem")
        account_key = generate_account_key().pem()
        config = {
            "directory_url": f"{proxy.url}/dir",
            "tls_root_path": str(pebble.tls_root),
            "account_key": account_key,
            "terms_of_service_agreed": True,
            "http_address": "127.0.0.1:0",
            "ca_chain_path": str(chain),
            "poll_interval_seconds": 0.05,
            # Pebble 2.4 has no renewalInfo. Debian unstable's 2.10 has, but its profiles
            # leave the subject CN out, which the contract's leaf check refuses: ARI is
            # tested against 2.10 in tests/acme/test_pebble_newer.py.
            "renewal_info": False,
        }
        built: list[IssuerPort] = []

        async def build(issuer_id: str) -> IssuerPort:
            issuer = await build_acme_issuer(issuer_id, config)
            built.append(issuer)
            return issuer

        async def is_revoked(serial: int) -> RevocationReason | None:
            status = await asyncio.to_thread(pebble.cert_status, serial)
            if status is None or status.get("Status") != "Revoked":
                return None
            return RevocationReason(int(status.get("Reason") or 0))

        kind = PluginHost.from_plugins({"acme": plugin}).connector_types["acme"]
        try:
            yield LiveIssuer(
                issuer=await build("contract-acme"),
                root=(await asyncio.to_thread(pebble.issuing_chain))[-1],
                connector_type=kind,
                config=config,
                is_revoked=is_revoked,
                rebuild=lambda: build("contract-acme-rebuilt"),
                faults=ProxyFaults(proxy, _BUSY),
                secrets=(account_key.splitlines()[1],),
                default_validity=dt.timedelta(hours=24),
                # Pebble 2.4 refuses IPv4 and IPv6 in one CSR ("CSR is missing Order
                # IP": it sorts the order's and the CSR's addresses differently) and
                # draws serials with 63 random bits; both measured, both Pebble's.
                san_types=frozenset({"dns", "ipv4"}),
                serial_entropy_bits=63,
                # The proxy sees a closed connection a moment after the client closed it.
                open_connections=lambda: 0 if proxy.wait_idle(2.0) else proxy.open_connections,
            )
        finally:
            for each in built:
                await each.close()
            await asyncio.to_thread(proxy.stop)
