"""The ACME connector against step-ca's ACME provisioner (real http-01 on port 80)."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from certctl_acme._challenges import HttpResponder
from certctl_core import (
    AuthenticationError,
    CAUnavailableError,
    InvalidRequestError,
    RejectedError,
    RevocationReason,
    UnsupportedCapabilityError,
)
from tests.acme.conftest import BuildIssuer, StepCAAcme, request_for

pytestmark = [pytest.mark.anyio, pytest.mark.acme]


def _openssl_verify(tmp_path: Path, root: Path, chain_pem: str) -> str:
    certs = chain_pem.split("-----END CERTIFICATE-----\n")
    leaf = tmp_path / "leaf.pem"
    leaf.write_text(certs[0] + "-----END CERTIFICATE-----\n")
    untrusted = tmp_path / "untrusted.pem"
    untrusted.write_text("".join(c + "-----END CERTIFICATE-----\n" for c in certs[1:] if c.strip()))
    done = subprocess.run(
        ["openssl", "verify", "-CAfile", str(root), "-untrusted", str(untrusted), str(leaf)],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout + done.stderr


async def test_http01_issues_for_a_name_and_an_ip_and_openssl_verifies(
    stepca_acme: StepCAAcme, make_issuer: BuildIssuer, tmp_path: Path
) -> None:
    issuer = await make_issuer(stepca_acme.config())
    request = request_for("localhost", "127.0.0.1")
    issued = await issuer.issue(request)
    assert issued.sans.same_as(request.sans)
    assert len(issued.chain) == 2  # leaf + intermediate, no root
    out = _openssl_verify(tmp_path, stepca_acme.process.root_file, issued.chain_pem)
    assert "leaf.pem: OK" in out, out
    # The responder on port 80 is gone once the order is done: no token, no listener.
    responder = HttpResponder._by_address[(None, 80)]
    assert not responder.tokens and responder._server is None


async def test_requested_validity_is_sent_as_not_after(
    stepca_acme: StepCAAcme, make_issuer: BuildIssuer
) -> None:
    issuer = await make_issuer(stepca_acme.config())
    import attrs

    request = attrs.evolve(request_for("localhost"), validity=dt.timedelta(hours=2))
    start = dt.datetime.now(dt.UTC)
    issued = await issuer.issue(request)
    assert abs(issued.not_after - (start + dt.timedelta(hours=2))) < dt.timedelta(minutes=1)


async def test_revocation_with_reason_then_already_revoked(
    stepca_acme: StepCAAcme, make_issuer: BuildIssuer
) -> None:
    issuer = await make_issuer(stepca_acme.config())
    issued = await issuer.issue(request_for("127.0.0.1"))
    first = await issuer.revoke(issued.serial, RevocationReason.KEY_COMPROMISE)
    assert not first.already_revoked
    again = await issuer.revoke(issued.serial, RevocationReason.KEY_COMPROMISE)
    assert again.already_revoked


async def test_account_key_is_kept_and_looked_up(
    stepca_acme: StepCAAcme, make_issuer: BuildIssuer
) -> None:
    first = await make_issuer(stepca_acme.config())
    pem = first.account_key.pem()
    config = stepca_acme.config(account_key=pem)
    one = await make_issuer(config)
    two = await make_issuer(config, "another-id")
    assert await one.account_url() == await two.account_url()
    # A rebuilt connector (a hot swap) revokes what the previous one issued: the process
    # keeps the certificates, since ACME revokes by certificate, not by serial.
    issued = await one.issue(request_for("localhost"))
    await one.close()
    stranger = await make_issuer(stepca_acme.config())  # another account: not its to revoke
    with pytest.raises(InvalidRequestError, match="has not issued serial"):
        await stranger.revoke(issued.serial)
    assert not (await two.revoke(issued.serial)).already_revoked
    with pytest.raises(InvalidRequestError, match="has not issued serial"):
        await two.revoke(issued.serial + 1)


async def test_nothing_on_port_80_is_a_connection_error_and_cleans_up(
    stepca_acme: StepCAAcme, make_issuer: BuildIssuer
) -> None:
    # The responder listens on another port: step-ca's GET to port 80 is refused; step-ca
    # leaves the challenge pending with a connection error, the connector asks again
    # a few times, then reports it.
    issuer = await make_issuer(stepca_acme.config(http_address="127.0.0.1:8099"))
    with pytest.raises(RejectedError, match="connection") as caught:
        await issuer.issue(request_for("127.0.0.1"))
    assert caught.value.hint and "port 80" in caught.value.hint
    responder = HttpResponder._by_address.get(("127.0.0.1", 8099))
    assert responder is not None and not responder.tokens and responder._server is None


async def test_eab_required_without_eab_is_an_authentication_error(
    stepca_acme: StepCAAcme, make_issuer: BuildIssuer
) -> None:
    issuer = await make_issuer(stepca_acme.config("acme-eab"))
    with pytest.raises(AuthenticationError, match="externalAccountRequired") as caught:
        await issuer.issue(request_for("localhost"))
    assert "eab_kid" in (caught.value.hint or "")
    report = await issuer.check()
    assert not report.ok  # the directory says EAB is required and none is configured


async def test_not_after_beyond_the_provisioner_maximum_is_a_server_error(
    stepca_acme: StepCAAcme, make_issuer: BuildIssuer
) -> None:
    import attrs

    issuer = await make_issuer(stepca_acme.config())
    request = attrs.evolve(request_for("localhost"), validity=dt.timedelta(hours=48))
    with pytest.raises(CAUnavailableError, match="serverInternal"):
        await issuer.issue(request)


async def test_key_rollover_is_not_implemented_by_step_ca(
    stepca_acme: StepCAAcme, make_issuer: BuildIssuer
) -> None:
    from certctl_acme._jose import generate_account_key

    issuer = await make_issuer(stepca_acme.config())
    # step-ca 0.19 answers 501 with the type rejectedIdentifier (sic).
    with pytest.raises(UnsupportedCapabilityError, match="HTTP 501"):
        await issuer.rollover_account_key(generate_account_key().pem())


async def test_email_sans_are_refused_before_any_request(
    stepca_acme: StepCAAcme, make_issuer: BuildIssuer
) -> None:
    from certctl_contracts.csr import build_csr, new_private_key
    from certctl_core import CertificateRequest, SubjectAltNames

    csr, _ = build_csr(
        SubjectAltNames(dns=("localhost",), emails=("a@b.test",)),
        common_name="localhost",
        key=new_private_key("ec-p256"),
    )
    issuer = await make_issuer(stepca_acme.config())
    with pytest.raises(InvalidRequestError, match="DNS names and IP addresses only"):
        await issuer.issue(CertificateRequest.from_csr(csr))


def test_account_key_pem_round_trips() -> None:
    from certctl_acme._jose import generate_account_key, load_account_key

    key = generate_account_key()
    again = load_account_key(key.pem())
    assert again.thumbprint == key.thumbprint
    # Unencrypted PKCS#8, as the docs tell operators to store it.
    loaded = serialization.load_pem_private_key(key.pem().encode(), password=None)
    assert (
        loaded.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        == key.pem()
    )


async def test_cancelled_http01_order_withdraws_its_token(
    stepca_acme: StepCAAcme, make_issuer: BuildIssuer
) -> None:
    # Nothing answers on port 80 (the responder is elsewhere): step-ca keeps the
    # challenge pending and the connector waits between its repeated attempts.
    issuer = await make_issuer(
        stepca_acme.config(http_address="127.0.0.1:8098", poll_interval_seconds=5)
    )
    task = asyncio.create_task(issuer.issue(request_for("127.0.0.1")))
    responder = None
    for _ in range(200):
        responder = HttpResponder._by_address.get(("127.0.0.1", 8098))
        if responder is not None and responder.tokens:
            break
        await asyncio.sleep(0.02)
    assert responder is not None and responder.tokens
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not responder.tokens and responder._server is None


async def test_state_dir_keeps_certificates_for_revocation_after_a_restart(
    stepca_acme: StepCAAcme,
    make_issuer: BuildIssuer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from certctl_acme import connector

    state = tmp_path / "state"
    state.mkdir()
    config = stepca_acme.config(state_dir=str(state))
    first = await make_issuer(config)
    config["account_key"] = first.account_key.pem()
    first = await make_issuer(config)
    issued = await first.issue(request_for("localhost"))
    await first.close()
    (kept,) = state.rglob("*.der")
    assert kept.name == f"{issued.serial:x}.der" and kept.parent.parent == state
    monkeypatch.setattr(connector, "_issued_by_account", {})  # a new process
    # Another directory's issuer sharing the state_dir does not see it.
    other = await make_issuer({**config, "directory_url": config["directory_url"] + "/"})
    with pytest.raises(InvalidRequestError, match="has not issued serial"):
        await other.revoke(issued.serial)
    # A file swapped for another certificate is not sent as this serial.
    original = kept.read_bytes()
    second = await make_issuer(config)
    other_cert = await second.issue(request_for("localhost"))
    kept.write_bytes(other_cert.certificate.public_bytes(serialization.Encoding.DER))
    monkeypatch.setattr(connector, "_issued_by_account", {})
    again = await make_issuer(config)
    with pytest.raises(InvalidRequestError, match="has not issued serial"):
        await again.revoke(issued.serial)
    kept.write_bytes(original)
    assert not (await again.revoke(issued.serial, RevocationReason.SUPERSEDED)).already_revoked
