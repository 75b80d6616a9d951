"""The contract suite against the shipped reference CA, loaded as a plugin."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509

from certctl_contracts import IssuerContract, LiveIssuer, reference
from certctl_contracts.reference import ReferenceCA, ReferenceIssuer
from certctl_core import RevocationReason
from certctl_core.host import PluginHost
from tests.csr import make_request


class TestReferenceIssuer(IssuerContract):
    @pytest.fixture
    async def live_issuer(self, tmp_path: Path) -> AsyncIterator[LiveIssuer]:
        # Through the documented hook, as the runner for installed adapters does.
        harness = PluginHost.from_plugins({"reference": reference}).harnesses()["reference"]
        async with harness(tmp_path) as live:
            yield live


def test_ca_chain_is_root_and_intermediate_when_created() -> None:
    ca = ReferenceCA.create("Unit")

    ca.intermediate.verify_directly_issued_by(ca.root)
    ca.root.verify_directly_issued_by(ca.root)
    basic = ca.intermediate.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert basic.ca and basic.path_length == 0
    assert ca.chain == (ca.intermediate, ca.root)


@pytest.mark.anyio
async def test_state_is_readable_beside_the_adapter_when_issuing_and_revoking() -> None:
    ca = ReferenceCA.create()
    issuer = ReferenceIssuer("fake", ca=ca)
    try:
        issued = await issuer.issue(make_request())
        assert ca.records[issued.serial].certificate == issued.certificate
        assert ca.status(issued.serial).state == "good"
        await issuer.revoke(issued.serial, RevocationReason.KEY_COMPROMISE)
        assert ca.status(issued.serial).reason is RevocationReason.KEY_COMPROMISE
        assert (await issuer.check()).ok
    finally:
        await issuer.close()


def test_reference_type_is_not_registered_by_entry_points() -> None:
    assert "reference" not in PluginHost.discover().connector_types


def test_reference_module_imports_without_pytest() -> None:
    probe = "import sys, certctl_contracts.reference; assert 'pytest' not in sys.modules"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
