"""``certctl`` against the Local CA: the whole lifecycle, checked with openssl."""

from __future__ import annotations

import stat
from pathlib import Path

from cryptography import x509

from tests.cli.conftest import LOCAL_PASSWORD, certctl, openssl, verify_chain


def _base(config: Path) -> tuple[str, ...]:
    return ("--type", "localca", "--config", str(config))


def test_lifecycle_issue_renew_revoke_status_crl_when_driving_local_ca(
    localca_config: Path, tmp_path: Path
) -> None:
    base = _base(localca_config)
    issued = certctl(
        "issue",
        *base,
        "--cn",
        "svc.local.test",
        "--san",
        "svc.local.test",
        "--san",
        "ops@local.test",
        "--key-out",
        tmp_path / "svc.key",
        "--out",
        tmp_path / "svc.pem",
        "--max-ttl",
        "10d",
    )
    assert issued.code == 0, issued
    cert = x509.load_pem_x509_certificates((tmp_path / "svc.pem").read_bytes())[0]
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime.days <= 10  # the profile MaxTTL capped the CA's 90-day default

    chain = certctl("chain", *base, "--out", tmp_path / "ca.pem")
    assert chain.code == 0, chain
    root = x509.load_pem_x509_certificates((tmp_path / "ca.pem").read_bytes())[-1]
    (tmp_path / "root.pem").write_bytes(
        (tmp_path / "ca.pem").read_bytes().split(b"-----END CERTIFICATE-----\n")[-2]
        + b"-----END CERTIFICATE-----\n"
    )
    assert x509.load_pem_x509_certificate((tmp_path / "root.pem").read_bytes()) == root
    assert verify_chain(tmp_path, tmp_path / "svc.pem", tmp_path / "root.pem").returncode == 0

    renewed = certctl(
        "renew",
        *base,
        "--cert",
        tmp_path / "svc.pem",
        "--new-key",
        "--key-out",
        tmp_path / "svc2.key",
        "--out",
        tmp_path / "svc2.pem",
    )
    assert renewed.code == 0, renewed
    assert stat.S_IMODE((tmp_path / "svc2.key").stat().st_mode) == 0o600
    new = x509.load_pem_x509_certificates((tmp_path / "svc2.pem").read_bytes())[0]
    assert new.subject == cert.subject and new.serial_number != cert.serial_number
    assert verify_chain(tmp_path, tmp_path / "svc2.pem", tmp_path / "root.pem").returncode == 0

    revoked = certctl("revoke", *base, "--cert", tmp_path / "svc.pem", "--reason", "superseded")
    assert revoked.code == 0, revoked
    status = certctl("status", *base, "--json", "--serial", str(cert.serial_number))
    assert status.code == 0, status
    assert status.json()["state"] == "revoked"
    assert status.json()["reason"] == "superseded"
    good = certctl("status", *base, "--cert", tmp_path / "svc2.pem")
    assert good.code == 0 and ": good" in good.stdout, good

    crl = certctl("crl", *base, "--out", tmp_path / "ca.crl.pem", "--pem")
    assert crl.code == 0, crl
    text = openssl("crl", "-in", tmp_path / "ca.crl.pem", "-noout", "-text")
    assert text.returncode == 0, text.stderr
    assert f"{cert.serial_number:X}" in text.stdout.replace(":", "").upper()
    crl_check = openssl(
        "verify",
        "-crl_check",
        "-CAfile",
        tmp_path / "ca.pem",
        "-CRLfile",
        tmp_path / "ca.crl.pem",
        tmp_path / "svc.pem",
    )
    assert crl_check.returncode != 0
    assert "certificate revoked" in crl_check.stdout + crl_check.stderr

    for run in (issued, chain, renewed, revoked, status, good, crl):
        assert LOCAL_PASSWORD not in run.output


def test_existing_files_are_kept_unless_force_when_issuing_again(
    localca_config: Path, tmp_path: Path
) -> None:
    base = _base(localca_config)
    args = (
        "issue",
        *base,
        "--cn",
        "f.local.test",
        "--key-out",
        str(tmp_path / "f.key"),
        "--out",
        str(tmp_path / "f.pem"),
    )
    assert certctl(*args).code == 0
    key_before = (tmp_path / "f.key").read_bytes()
    pem_before = (tmp_path / "f.pem").read_bytes()

    refused = certctl(*args)
    assert refused.code == 2, refused
    assert "refusing to overwrite" in refused.stderr and "--force" in refused.stderr
    assert (tmp_path / "f.key").read_bytes() == key_before
    assert (tmp_path / "f.pem").read_bytes() == pem_before
    # the refusal came before the CA was asked: still one certificate in the ledger
    check = certctl("check", *base, "--json")
    ledger = next(c for c in check.json()["checks"] if c["name"] == "ledger")
    assert ledger["detail"].startswith("1 certificates issued")

    forced = certctl(*args, "--force")
    assert forced.code == 0, forced
    assert (tmp_path / "f.key").read_bytes() != key_before
    assert stat.S_IMODE((tmp_path / "f.key").stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_key_file_is_private_even_when_umask_is_permissive(
    localca_config: Path, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    script = (
        "import os, sys; os.umask(0); "
        "from certctl_host.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTCTL_")}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            "issue",
            *_base(localca_config),
            "--cn",
            "u.local.test",
            "--key-out",
            str(tmp_path / "u.key"),
            "--out",
            str(tmp_path / "u.pem"),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE((tmp_path / "u.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "u.pem").stat().st_mode) == 0o644


def test_renew_from_csr_keeps_names_and_refuses_other_names(
    localca_config: Path, tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives import serialization

    from tests.csr import make_csr, new_key

    base = _base(localca_config)
    key = new_key()
    csr = make_csr(cn="c.local.test", dns=("c.local.test",), key=key)
    (tmp_path / "c.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    first = certctl("issue", *base, "--csr", tmp_path / "c.csr", "--out", tmp_path / "c.pem")
    assert first.code == 0, first

    renewed = certctl(
        "renew",
        *base,
        "--cert",
        tmp_path / "c.pem",
        "--csr",
        tmp_path / "c.csr",
        "--out",
        tmp_path / "c2.pem",
        "--json",
    )
    assert renewed.code == 0, renewed
    assert renewed.json()["key_reused"] is True

    other = make_csr(cn="other.local.test", dns=("other.local.test",), key=key)
    (tmp_path / "other.csr").write_bytes(other.public_bytes(serialization.Encoding.PEM))
    refused = certctl(
        "renew",
        *base,
        "--cert",
        tmp_path / "c.pem",
        "--csr",
        tmp_path / "other.csr",
        "--out",
        tmp_path / "c3.pem",
    )
    assert refused.code == 2, refused
    assert "another subject or other SANs" in refused.stderr
    assert not (tmp_path / "c3.pem").exists()
