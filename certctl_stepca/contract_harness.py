"""The contract-suite harness of the step-ca connector: a real step-ca on loopback.

Registered through ``certctl_register_harnesses``; the contract suite enters it once per
test module. It builds step-ca from Debian's sources on first use (cached), generates a
PKI and a JWK provisioner, starts the CA and yields a connector configured like an
operator would configure it (key file + password file + root file).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from certctl_contracts.harness import LiveIssuer
from certctl_stepca.connector import build_stepca_issuer
from certctl_stepca.testing import StepCA, make_provisioner_key, provisioner_entry

__all__ = ["live_stepca_issuer"]

_PASSWORD = "contract-suite provisioner password"  # noqa: S105 - a throwaway test CA's


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
    try:
        key_file = key.write_key_file(tmp_path / "provisioner.json")
        password_file = key.write_password_file(tmp_path / "password.txt")
        issuer = await build_stepca_issuer(
            "contract-stepca",
            {
                "ca_url": ca.url,
                "provisioner_name": key.name,
                "provisioner_key_path": str(key_file),
                "provisioner_password_file": str(password_file),
                "root_cert_path": str(ca.root_file),
            },
            env={},
        )
        private = json.loads(key.private_jwk_json)
        try:
            yield LiveIssuer(
                issuer=issuer,
                trust_anchors=(ca.pki.root_cert,),
                secrets=(_PASSWORD, str(private["d"])),
                default_validity=dt.timedelta(hours=24),
            )
        finally:
            await issuer.close()
    finally:
        await asyncio.to_thread(ca.stop)
