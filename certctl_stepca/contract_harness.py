"""The contract-suite harness of the step-ca connector: a real step-ca on loopback.

Registered through ``certctl_register_harnesses``; the contract suite enters it once per
test. It builds step-ca from Debian's sources on first use (cached), generates a PKI and
a JWK provisioner, starts the CA behind a :class:`~certctl_stepca.testing.FaultProxy`
and yields a connector configured like an operator would configure it (key file +
password file + root file), talking to the CA through the proxy.

Side channels: the root is the PKI's own file; revocations are what the CA accepted, as
the proxy saw it (a 200 answer to ``/1.0/revoke`` whose token's subject is the serial).
step-ca 0.20 offers no read-back of its database, so the harness cannot see reasons
(``records_reasons=False``). Faults are injected by the proxy on the connector's real
path: connections reset (unreachable), answers delayed (slow), 503 with Retry-After
(erroring).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from certctl_contracts.harness import LiveIssuer
from certctl_core import IssuerPort, RevocationReason
from certctl_core.host import PluginHost
from certctl_stepca import plugin
from certctl_stepca.config import CONNECTOR_NAME
from certctl_stepca.connector import build_stepca_issuer
from certctl_stepca.testing import (
    FaultProxy,
    ProxyFaults,
    Replacement,
    StepCA,
    make_provisioner_key,
    provisioner_entry,
)

__all__ = ["live_stepca_issuer"]

_PASSWORD = "contract-suite provisioner password"  # noqa: S105 - a throwaway test CA's
_BUSY = Replacement(
    status=503,
    headers=(("content-type", "application/json"), ("retry-after", "1")),
    chunk=b'{"status":503,"message":"The CA is busy"}',
)


def _subject(token: str | None) -> str | None:
    if token is None:
        return None
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, IndexError):
        return None
    subject = claims.get("sub") if isinstance(claims, dict) else None
    return subject if isinstance(subject, str) else None


@asynccontextmanager
async def live_stepca_issuer(tmp_path: Path) -> AsyncIterator[LiveIssuer]:
    """Start a step-ca in ``tmp_path`` and yield a connector to it; stop both on exit."""
    key = make_provisioner_key("certctl-contract", _PASSWORD)
    claims = {
        "minTLSCertDuration": "5m",
        "defaultTLSCertDuration": "24h",
        "maxTLSCertDuration": "72h",
    }
    ca = StepCA.create(tmp_path / "step-ca", provisioners=[provisioner_entry(key, claims=claims)])
    await asyncio.to_thread(ca.start)
    proxy = FaultProxy.for_stepca(ca, tmp_path / "proxy")
    proxy.start()
    built: list[IssuerPort] = []
    try:
        key_file = key.write_key_file(tmp_path / "provisioner.json")
        password_file = key.write_password_file(tmp_path / "password.txt")
        config = {
            "ca_url": proxy.url,
            "provisioner_name": key.name,
            "provisioner_key_path": str(key_file),
            "provisioner_password_file": str(password_file),
            "root_cert_path": str(ca.root_file),
            "max_retries": 1,
        }

        async def build(issuer_id: str) -> IssuerPort:
            issuer = await build_stepca_issuer(issuer_id, config, env={})
            built.append(issuer)
            return issuer

        async def is_revoked(serial: int) -> RevocationReason | None:
            for request in proxy.requests:
                if (
                    request.path == "/1.0/revoke"
                    and request.upstream_status == 200
                    and _subject(request.token) == str(serial)
                ):
                    return RevocationReason.UNSPECIFIED  # step-ca keeps the reason unseen
            return None

        issuer = await build("contract-stepca")
        private = json.loads(key.private_jwk_json)
        kind = PluginHost.from_plugins({CONNECTOR_NAME: plugin}).connector_types[CONNECTOR_NAME]
        yield LiveIssuer(
            issuer=issuer,
            root=ca.pki.root_cert,
            connector_type=kind,
            config=config,
            is_revoked=is_revoked,
            rebuild=lambda: build("contract-stepca-rebuilt"),
            faults=ProxyFaults(proxy, _BUSY),
            secrets=(_PASSWORD, str(private["d"])),
            default_validity=dt.timedelta(hours=24),
            records_reasons=False,
        )
    finally:
        for each in built:
            await each.close()
        await asyncio.to_thread(proxy.stop)
        await asyncio.to_thread(ca.stop)
