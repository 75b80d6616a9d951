"""Lifecycle and hygiene: close, files, secrets, revocation rules, existing CAs, plugin."""

from __future__ import annotations

import logging
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from certctl_core import (
    CertificateRequest,
    ConfigError,
    InvalidRequestError,
    IssuerClosedError,
    IssuerPort,
    RevocationReason,
)
from certctl_core.host import PluginHost
from certctl_localca import CAPABILITIES, LocalCAIssuer, build_localca_issuer
from certctl_localca._pki import BACKDATE

from .conftest import (
    PASSWORD,
    config_for,
    make_csr,
    open_ca,
    openssl,
    write_operator_ca,
    write_pem,
)


@pytest.mark.anyio
async def test_close_is_harmless_when_called_twice_and_later_calls_raise(ca: LocalCAIssuer) -> None:
    issued = await ca.issue(CertificateRequest.from_csr(make_csr()))
    await ca.close()
    await ca.close()
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: ca.issue(CertificateRequest.from_csr(make_csr())),
        lambda: ca.revoke(issued.serial),
        ca.ca_chain,
        ca.check,
        ca.crl,
        lambda: ca.ocsp(b"\x30\x00"),
        lambda: ca.status(issued.serial),
    ]
    for call in calls:
        with pytest.raises(IssuerClosedError):
            await call()


def _modes(directory: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in directory.iterdir()}


@pytest.mark.anyio
async def test_state_files_are_private_when_created(ca: LocalCAIssuer, state_dir: Path) -> None:
    issued = await ca.issue(CertificateRequest.from_csr(make_csr()))
    await ca.revoke(issued.serial)
    await ca.crl()
    modes = _modes(state_dir)
    for name in ("root.key", "root.pem", "intermediate.key", "intermediate.pem", "ledger.sqlite3"):
        assert name in modes
    assert set(modes.values()) == {0o600}, modes
    assert _modes(state_dir.parent)[state_dir.name] == 0o700
    assert not [n for n in modes if n.endswith(".tmp")]
    key = (state_dir / "intermediate.key").read_bytes()
    assert key.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")


@pytest.mark.anyio
async def test_secrets_never_show_when_logging_at_debug(
    state_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = config_for(state_dir)
    issuer = await build_localca_issuer("secretive", config)
    issued = await issuer.issue(CertificateRequest.from_csr(make_csr()))
    await issuer.revoke(issued.serial)
    await issuer.crl()
    await issuer.check()
    with pytest.raises(InvalidRequestError) as caught:
        await issuer.ocsp(b"junk")
    await issuer.close()
    with pytest.raises(ConfigError) as wrong:
        await build_localca_issuer("secretive", {**config, "key_password": "not-" + PASSWORD})
    key_pem = (state_dir / "intermediate.key").read_text()
    shown = [
        repr(issuer),
        str(issuer),
        repr(caught.value),
        str(wrong.value),
        repr(wrong.value),
        caplog.text,
    ]
    assert "issued serial" in caplog.text  # logging did happen
    for text in shown:
        assert PASSWORD not in text
        assert key_pem[40:80] not in text


@pytest.mark.anyio
async def test_revoke_rules_apply_when_serial_is_unknown_twice_or_reason_invalid(
    ca: LocalCAIssuer,
) -> None:
    with pytest.raises(InvalidRequestError, match="never issued"):
        await ca.revoke(0x1234)
    with pytest.raises(InvalidRequestError):
        await ca.revoke(-1)
    issued = await ca.issue(CertificateRequest.from_csr(make_csr()))
    with pytest.raises(InvalidRequestError, match="removeFromCRL"):
        await ca.revoke(issued.serial, RevocationReason.REMOVE_FROM_CRL)
    first = await ca.revoke(issued.serial, RevocationReason.KEY_COMPROMISE)
    assert not first.already_revoked and first.reason is RevocationReason.KEY_COMPROMISE
    assert first.revoked_at is not None
    second = await ca.revoke(issued.serial, RevocationReason.SUPERSEDED)
    assert second.already_revoked
    assert (second.reason, second.revoked_at) == (first.reason, first.revoked_at)
    status = await ca.status(issued.serial)
    assert (status.state, status.reason, status.revoked_at) == (
        "revoked",
        RevocationReason.KEY_COMPROMISE,
        first.revoked_at,
    )
    assert (await ca.status(0x1234)).state == "unknown"


@pytest.mark.anyio
async def test_health_report_is_ok_when_ca_is_fresh(ca: LocalCAIssuer) -> None:
    report = await ca.check()
    assert report.ok
    assert {c.name for c in report.checks} >= {"ledger", "state_dir"}
    assert ca.capabilities == CAPABILITIES
    assert isinstance(ca, IssuerPort)


def _rsa_ca(tmp_path: Path) -> tuple[Path, Path, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return write_operator_ca(tmp_path, "Operator RSA CA", key)


@pytest.mark.anyio
async def test_existing_rsa_ca_signs_everything_when_configured(tmp_path: Path) -> None:
    cert_file, key_file, root = _rsa_ca(tmp_path)
    issuer = await open_ca(
        tmp_path / "state", ca_cert_file=str(cert_file), ca_key_file=str(key_file)
    )
    try:
        assert await issuer.ca_chain() == (root,)
        good = await issuer.issue(CertificateRequest.from_csr(make_csr()))
        bad = await issuer.issue(CertificateRequest.from_csr(make_csr()))
        assert good.chain == (good.certificate,)  # the root is never in an issued chain
        await issuer.revoke(bad.serial, RevocationReason.CA_COMPROMISE)
        crl = x509.load_der_x509_crl(await issuer.crl())
        assert crl.is_signature_valid(root.public_key())  # type: ignore[arg-type]
        assert crl.signature_algorithm_oid == x509.oid.SignatureAlgorithmOID.RSA_WITH_SHA256
        (tmp_path / "crl.der").write_bytes(await issuer.crl())
        assert (
            openssl(
                "crl", "-inform", "DER", "-in", tmp_path / "crl.der", "-out", tmp_path / "crl.pem"
            ).returncode
            == 0
        )
        for issued, ok in ((good, True), (bad, False)):
            leaf = write_pem(tmp_path / "leaf.pem", issued.certificate)
            result = openssl(
                "verify", "-crl_check", "-CAfile", cert_file, "-CRLfile", tmp_path / "crl.pem", leaf
            )
            assert (result.returncode == 0) is ok, result.stdout + result.stderr
    finally:
        await issuer.close()
    assert not (tmp_path / "state" / "root.key").exists()  # nothing generated


@pytest.mark.anyio
async def test_unencrypted_ca_key_is_refused_when_configured(tmp_path: Path) -> None:
    cert_file, key_file, _ = _rsa_ca(tmp_path)
    key = serialization.load_pem_private_key(key_file.read_bytes(), PASSWORD.encode())
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ConfigError) as caught:
        await open_ca(tmp_path / "state", ca_cert_file=str(cert_file), ca_key_file=str(key_file))
    assert [p.field for p in caught.value.problems] == ["ca_key_file"]


@pytest.mark.anyio
async def test_plugin_registers_type_and_harness_when_discovered(tmp_path: Path) -> None:
    host = PluginHost.discover()
    assert not [f for f in host.failures if f.entry_point == "localca"], host.failures
    connector_type = host.connector_types["localca"]
    assert connector_type.capabilities == CAPABILITIES
    assert connector_type.version
    harness = host.harnesses()["localca"]
    async with harness(tmp_path) as live:
        issued = await live.issuer.issue(CertificateRequest.from_csr(make_csr()))
        assert issued.chain[-1].issuer == live.trust_anchors[0].subject
        assert live.default_validity == issued.not_after - issued.not_before - BACKDATE
        for secret in live.secrets:
            assert secret not in repr(live.issuer)
        issuer = live.issuer
    with pytest.raises(IssuerClosedError):
        await issuer.ca_chain()
    built = await connector_type.factory("via-type", config_for(tmp_path / "other"))
    try:
        assert built.issuer_id == "via-type"
    finally:
        await built.close()
