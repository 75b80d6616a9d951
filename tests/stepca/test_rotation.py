"""Provisioner rotation without restart, end to end against a real step-ca."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cryptography import x509

from certctl_core import CertctlError
from certctl_core.host import PluginHost, Registry
from certctl_stepca.testing import StepCA, make_provisioner_key, provisioner_entry
from tests.csr import make_request

pytestmark = [pytest.mark.anyio, pytest.mark.stepca]

STEP_PROVISIONER_OID = x509.ObjectIdentifier("1.3.6.1.4.1.37476.9000.64.1")


def provisioner_of(cert: x509.Certificate) -> str:
    """Which provisioner step-ca used: it records the name in its own extension."""
    value = cert.extensions.get_extension_for_oid(STEP_PROVISIONER_OID).value
    assert isinstance(value, x509.UnrecognizedExtension)
    return "new" if b"certctl-2026b" in value.value else "old"


async def test_rotation_under_concurrent_issuance_loses_nothing(tmp_path: Path) -> None:
    old = make_provisioner_key("certctl-2026a", "old password")
    new = make_provisioner_key("certctl-2026b", "new password", key_type="EC-P384")
    ca = StepCA.create(tmp_path / "ca", provisioners=[provisioner_entry(old)])
    await asyncio.to_thread(ca.start)

    def config(key_name: str, key_file: Path, password: str) -> dict[str, object]:
        return {
            "ca_url": ca.url,
            "provisioner_name": key_name,
            "provisioner_key_path": str(key_file),
            "provisioner_password": password,
            "root_cert_path": str(ca.root_file),
        }

    old_config = config(old.name, old.write_key_file(tmp_path / "old.json"), "old password")
    new_config = config(new.name, new.write_key_file(tmp_path / "new.json"), "new password")
    failures: list[BaseException] = []
    served: list[str] = []
    stop = asyncio.Event()

    async with Registry(PluginHost.discover()) as registry:
        await registry.build("step", "stepca", old_config)

        async def worker() -> None:
            while not stop.is_set():
                try:
                    issued = await registry.issue("step", make_request())
                    served.append(provisioner_of(issued.certificate))
                except CertctlError as exc:
                    failures.append(exc)

        workers = [asyncio.create_task(worker()) for _ in range(8)]
        try:
            await asyncio.sleep(0.3)
            # 1. the operator adds the new provisioner and reloads step-ca
            await asyncio.to_thread(ca.add_provisioner, provisioner_entry(new))
            await asyncio.sleep(0.3)
            # 2. certctl hot-swaps to it; calls running on the old key finish first
            assert await registry.rebuild("step", new_config)
            await registry.wait_retired()
            # 3. the old provisioner is removed and step-ca reloaded again
            await asyncio.to_thread(ca.remove_provisioner, old.name)
            await asyncio.sleep(0.5)
        finally:
            stop.set()
            await asyncio.gather(*workers)
            await asyncio.to_thread(ca.stop)

    assert failures == []
    assert served[:8] == ["old"] * 8
    assert served[-8:] == ["new"] * 8
    assert served.count("new") > 8
