"""Secrets never leak: a full cycle at DEBUG with every output captured."""

from __future__ import annotations

import logging

import pytest

from certctl_core import AuthenticationError, ConfigError, RevocationReason
from certctl_stepca.testing import FaultProxy
from tests.csr import make_request
from tests.stepca.conftest import CA, PASSWORD, BuildIssuer

pytestmark = [pytest.mark.anyio, pytest.mark.stepca]


async def test_issue_revoke_and_errors_leak_no_secret(
    make_issuer: BuildIssuer,
    stepca: CA,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    proxy: FaultProxy,
) -> None:
    caplog.set_level(logging.DEBUG)
    issuer = await make_issuer(ca_url=proxy.url)
    outputs = [repr(issuer), str(issuer)]
    issued = await issuer.issue(make_request())
    await issuer.revoke(issued.serial, RevocationReason.SUPERSEDED)
    await issuer.revoke(issued.serial, RevocationReason.SUPERSEDED)
    outputs.append(repr((await issuer.check()).as_dict()))

    wrong = await make_issuer(provisioner_name="nobody")
    with pytest.raises(AuthenticationError) as auth:
        await wrong.issue(make_request())
    with pytest.raises(ConfigError) as config:
        await make_issuer(provisioner_password_file=None, provisioner_password=PASSWORD + " ")
    outputs += [str(auth.value), repr(auth.value), str(config.value), repr(config.value)]

    captured = capsys.readouterr()
    everything = "\n".join([*outputs, caplog.text, captured.out, captured.err])
    tokens = [r.token for r in proxy.requests if r.token]  # what the proxy saw on the wire
    assert len(tokens) >= 3
    assert "/1.0/sign" in caplog.text  # DEBUG logging really was on
    for secret in [PASSWORD, PASSWORD + " ", stepca.private_d, *tokens]:
        assert secret not in everything
