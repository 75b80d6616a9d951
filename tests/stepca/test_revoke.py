"""Revocation against a real step-ca."""

from __future__ import annotations

import pytest

from certctl_core import InvalidRequestError, RevocationReason, UnsupportedCapabilityError
from certctl_stepca import StepCAIssuer
from tests.csr import make_request

pytestmark = [pytest.mark.anyio, pytest.mark.stepca]


async def test_revoke_succeeds_then_reports_already_revoked_when_repeated(
    issuer: StepCAIssuer,
) -> None:
    issued = await issuer.issue(make_request())

    first = await issuer.revoke(issued.serial, RevocationReason.KEY_COMPROMISE)
    second = await issuer.revoke(issued.serial, RevocationReason.KEY_COMPROMISE)

    assert first.serial == issued.serial
    assert first.reason is RevocationReason.KEY_COMPROMISE
    assert not first.already_revoked
    assert second.already_revoked


@pytest.mark.parametrize("reason", list(RevocationReason))
async def test_revoke_accepts_every_rfc5280_reason(
    issuer: StepCAIssuer, reason: RevocationReason
) -> None:
    issued = await issuer.issue(make_request())
    result = await issuer.revoke(issued.serial, reason)
    assert result.reason is reason
    assert not result.already_revoked


@pytest.mark.parametrize("serial", [0, -5, 1 << 160])
async def test_revoke_rejects_impossible_serials_locally(issuer: StepCAIssuer, serial: int) -> None:
    with pytest.raises(InvalidRequestError, match="serial"):
        await issuer.revoke(serial)


async def test_optional_capabilities_raise_unsupported(issuer: StepCAIssuer) -> None:
    assert issuer.capabilities.names() == ()
    with pytest.raises(UnsupportedCapabilityError):
        await issuer.crl()
    with pytest.raises(UnsupportedCapabilityError):
        await issuer.status(1)
