"""No secret anywhere: a full issue / revoke / rotate / fault cycle with every logger at
DEBUG (httpx and httpcore included), every output captured and searched.

The secrets: both provisioner passwords, both private keys (the JWK ``d`` and the whole
private JWK), every one-time token the proxy saw on the wire (and its signature part),
and the intermediate key password of step-ca.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from certctl_core import AuthenticationError, CertctlError, ConfigError, RevocationReason
from certctl_core.host import PluginHost, Registry
from certctl_stepca.testing import (
    Fault,
    FaultProxy,
    StepCA,
    make_provisioner_key,
    provisioner_entry,
)
from tests.csr import make_request

pytestmark = [pytest.mark.anyio, pytest.mark.stepca]

OLD_PASSWORD = "old: Tr0ub4dor&3 horse"
NEW_PASSWORD = "new: staple battery correct"


async def test_full_lifecycle_with_faults_at_debug_leaks_no_secret(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger: certctl, httpx, httpcore, asyncio
    for name in ("httpx", "httpcore", "certctl_stepca", "certctl_core"):
        # The CLI quiets httpx and httpcore process-wide; open them up again (restored
        # after the test by caplog).
        caplog.set_level(logging.DEBUG, logger=name)
    old = make_provisioner_key("certctl-old", OLD_PASSWORD)
    new = make_provisioner_key("certctl-new", NEW_PASSWORD, key_type="EC-P384")
    ca = StepCA.create(tmp_path / "ca", provisioners=[provisioner_entry(old)])
    await asyncio.to_thread(ca.start)
    proxy = FaultProxy.for_stepca(ca, tmp_path / "proxy")
    proxy.start()
    outputs: list[str] = []

    def config(key_file: Path, name: str, **extra: object) -> dict[str, object]:
        return {
            "ca_url": proxy.url,
            "provisioner_name": name,
            "provisioner_key_path": str(key_file),
            "root_cert_path": str(ca.root_file),
            "max_retries": 1,
            "timeout_seconds": 1,
            **extra,
        }

    old_password_file = old.write_password_file(tmp_path / "old.pw")
    old_config = config(
        old.write_key_file(tmp_path / "old.json"),
        old.name,
        provisioner_password_file=str(old_password_file),
    )
    new_config = config(
        new.write_key_file(tmp_path / "new.json", form="compact"),
        new.name,
        provisioner_password=NEW_PASSWORD,
    )
    try:
        async with Registry(PluginHost.discover()) as registry:
            await registry.build("corp", "stepca", old_config)
            issued = await registry.issue("corp", make_request())
            outputs += [repr(issued), repr(await registry.check("corp"))]
            await registry.revoke("corp", issued.serial, RevocationReason.KEY_COMPROMISE)
            # faults: a lost answer, a reset, a time-out
            proxy.inject(Fault.DROP_AFTER_FORWARD, path="/1.0/sign", times=1)
            await registry.issue("corp", make_request())
            proxy.inject(Fault.BLACKHOLE, path="/1.0/sign", times=2)
            with pytest.raises(CertctlError) as timed_out:
                await registry.issue("corp", make_request())
            outputs += [str(timed_out.value), repr(timed_out.value)]
            # rotation: add the new provisioner, hot-swap, remove the old one
            await asyncio.to_thread(ca.add_provisioner, provisioner_entry(new))
            await registry.rebuild("corp", new_config)
            await registry.wait_retired()
            await asyncio.to_thread(ca.remove_provisioner, old.name)
            rotated = await registry.issue("corp", make_request())
            await registry.revoke("corp", rotated.serial)
            outputs += [repr(registry.info("corp")), repr(registry.issuers())]
            # failures that quote the configuration back: a wrong password, a stale key
            with pytest.raises(ConfigError) as wrong:
                await registry.rebuild(
                    "corp", {**new_config, "provisioner_password": NEW_PASSWORD + "\n"}
                )
            await registry.build("stale", "stepca", old_config)
            with pytest.raises(AuthenticationError) as stale:
                await registry.issue("stale", make_request())
            outputs += [str(e.value) for e in (wrong, stale)] + [repr(stale.value)]
            outputs += [repr(e.value.__dict__) for e in (wrong, stale, timed_out)]
    finally:
        proxy.stop()
        await asyncio.to_thread(ca.stop)

    tokens = [r for r in proxy.requests if r.jti]
    assert len(tokens) >= 8
    wire_tokens = [r.token for r in tokens if r.token]
    signatures = [t.rsplit(".", 1)[1] for t in wire_tokens]
    captured = capsys.readouterr()
    everything = "\n".join([*outputs, caplog.text, captured.out, captured.err])
    assert "/1.0/sign" in caplog.text  # DEBUG logging really was on
    assert "httpcore" in caplog.text or "httpx" in caplog.text
    secrets = [
        OLD_PASSWORD,
        NEW_PASSWORD,
        old.password,
        new.password,
        json.loads(old.private_jwk_json)["d"],
        json.loads(new.private_jwk_json)["d"],
        old.private_jwk_json,
        new.private_jwk_json,
        ca.password,
        *[r.jti for r in tokens if r.jti],  # a token's id is as good as the token in logs
        *wire_tokens,
        *signatures,
    ]
    leaked = [s[:6] + "..." for s in secrets if s and s in everything]
    assert leaked == []
