"""``certctl`` against a real step-ca: issue, renew, revoke, chain, check, exit codes."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.cli.conftest import PASSWORD, StepCASetup, certctl, clean_env, openssl, verify_chain
from tests.csr import make_csr

pytestmark = pytest.mark.stepca


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificates(path.read_bytes())[0]


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_issue_writes_verifiable_chain_and_private_key_when_cn_and_sans_given(
    stepca: StepCASetup, stepca_config: Path, tmp_path: Path
) -> None:
    run = certctl(
        "issue",
        "--type",
        "stepca",
        "--config",
        stepca_config,
        "--cn",
        "app.cli.test",
        "--san",
        "app.cli.test",
        "--san",
        "10.9.8.7",
        "--key-out",
        tmp_path / "app.key",
        "--out",
        tmp_path / "app.pem",
        "--validity",
        "2h",
    )
    assert run.code == 0, run
    assert "issued through issuer 'stepca'" in run.stdout
    assert stat.S_IMODE((tmp_path / "app.key").stat().st_mode) == 0o600
    cert = _cert(tmp_path / "app.pem")
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["app.cli.test"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.9.8.7"]
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 7200 <= lifetime.total_seconds() <= 7200 + 120
    key = serialization.load_pem_private_key((tmp_path / "app.key").read_bytes(), None)
    assert _spki(cert) == key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    verified = verify_chain(tmp_path, tmp_path / "app.pem", stepca.root)
    assert verified.returncode == 0, verified.stderr
    assert "OK" in verified.stdout
    assert f"{cert.serial_number}" in run.stdout


def test_issue_from_csr_prints_chain_on_stdout_when_no_out_given(
    stepca: StepCASetup, stepca_config: Path, tmp_path: Path
) -> None:
    csr = make_csr(cn="csr.cli.test", dns=("csr.cli.test",))
    (tmp_path / "req.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    run = certctl(
        "issue", "--type", "stepca", "--config", stepca_config, "--csr", tmp_path / "req.csr"
    )
    assert run.code == 0, run
    certs = x509.load_pem_x509_certificates(run.stdout.encode())
    assert len(certs) == 2
    assert _spki(certs[0]) == csr.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert "issued through" in run.stderr  # the summary stays off stdout
    (tmp_path / "chain.pem").write_text(run.stdout)
    assert verify_chain(tmp_path, tmp_path / "chain.pem", stepca.root).returncode == 0


def test_issue_json_is_one_document_with_serial_and_files_when_json_given(
    stepca_config: Path, tmp_path: Path
) -> None:
    run = certctl(
        "issue",
        "--json",
        "--type",
        "stepca",
        "--config",
        stepca_config,
        "--cn",
        "j.cli.test",
        "--key-out",
        tmp_path / "j.key",
        "--out",
        tmp_path / "j.pem",
    )
    assert run.code == 0, run
    doc = run.json()
    assert doc["ok"] is True
    cert = _cert(tmp_path / "j.pem")
    assert doc["certificate"]["serial_decimal"] == str(cert.serial_number)
    assert int(doc["certificate"]["serial_hex"], 16) == cert.serial_number
    assert doc["certificate"]["sans"] == ["j.cli.test"]
    assert doc["files"] == {"certificate": str(tmp_path / "j.pem"), "key": str(tmp_path / "j.key")}
    assert doc["key_generated"] is True


def test_renew_reuses_key_and_keeps_names_when_key_given(
    stepca: StepCASetup, stepca_config: Path, tmp_path: Path
) -> None:
    base = ("--type", "stepca", "--config", stepca_config)
    first = certctl(
        "issue",
        *base,
        "--cn",
        "r.cli.test",
        "--san",
        "r.cli.test",
        "--san",
        "r2.cli.test",
        "--key-out",
        tmp_path / "r.key",
        "--out",
        tmp_path / "r.pem",
    )
    assert first.code == 0, first
    old = _cert(tmp_path / "r.pem")
    key_before = (tmp_path / "r.key").read_bytes()

    run = certctl(
        "renew", *base, "--cert", tmp_path / "r.pem", "--key", tmp_path / "r.key", "--in-place"
    )
    assert run.code == 0, run
    new = _cert(tmp_path / "r.pem")
    assert new.serial_number != old.serial_number
    assert new.subject == old.subject
    assert (
        new.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        == old.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    )
    assert _spki(new) == _spki(old)
    assert (tmp_path / "r.key").read_bytes() == key_before
    assert "key       reused" in run.stdout
    assert verify_chain(tmp_path, tmp_path / "r.pem", stepca.root).returncode == 0


def test_renew_generates_new_key_in_place_when_new_key_given(
    stepca: StepCASetup, stepca_config: Path, tmp_path: Path
) -> None:
    base = ("--type", "stepca", "--config", stepca_config)
    assert (
        certctl(
            "issue",
            *base,
            "--cn",
            "n.cli.test",
            "--key-type",
            "rsa-2048",
            "--key-out",
            tmp_path / "n.key",
            "--out",
            tmp_path / "n.pem",
        ).code
        == 0
    )
    old = _cert(tmp_path / "n.pem")
    run = certctl(
        "renew",
        *base,
        "--json",
        "--cert",
        tmp_path / "n.pem",
        "--key",
        tmp_path / "n.key",
        "--new-key",
        "--in-place",
    )
    assert run.code == 0, run
    doc = run.json()
    assert doc["key_reused"] is False
    assert doc["previous"]["serial_decimal"] == str(old.serial_number)
    new = _cert(tmp_path / "n.pem")
    assert _spki(new) != _spki(old)
    key = serialization.load_pem_private_key((tmp_path / "n.key").read_bytes(), None)
    assert key.key_size == 2048  # type: ignore[union-attr]  # same type as the old key
    assert stat.S_IMODE((tmp_path / "n.key").stat().st_mode) == 0o600
    assert verify_chain(tmp_path, tmp_path / "n.pem", stepca.root).returncode == 0


def test_renew_refuses_when_key_does_not_belong_to_certificate(
    stepca_config: Path, tmp_path: Path
) -> None:
    base = ("--type", "stepca", "--config", stepca_config)
    for name in ("a", "b"):
        assert (
            certctl(
                "issue",
                *base,
                "--cn",
                f"{name}.cli.test",
                "--key-out",
                tmp_path / f"{name}.key",
                "--out",
                tmp_path / f"{name}.pem",
            ).code
            == 0
        )
    before = (tmp_path / "a.pem").read_bytes()
    run = certctl(
        "renew", *base, "--cert", tmp_path / "a.pem", "--key", tmp_path / "b.key", "--in-place"
    )
    assert run.code == 2, run
    assert "does not belong to the certificate" in run.stderr
    assert (tmp_path / "a.pem").read_bytes() == before


def test_revoke_by_hex_serial_then_again_reports_already_revoked(
    stepca_config: Path, tmp_path: Path
) -> None:
    base = ("--type", "stepca", "--config", stepca_config)
    assert (
        certctl(
            "issue",
            *base,
            "--cn",
            "v.cli.test",
            "--key-out",
            tmp_path / "v.key",
            "--out",
            tmp_path / "v.pem",
        ).code
        == 0
    )
    serial = _cert(tmp_path / "v.pem").serial_number
    digits = f"{serial:x}"
    digits = digits if len(digits) % 2 == 0 else "0" + digits
    colons = ":".join(digits[i : i + 2] for i in range(0, len(digits), 2))
    run = certctl("revoke", *base, "--serial", colons, "--reason", "keyCompromise", "--json")
    assert run.code == 0, run
    doc = run.json()
    assert doc["serial_decimal"] == str(serial)
    assert (doc["reason"], doc["reason_code"], doc["already_revoked"]) == (
        "keyCompromise",
        1,
        False,
    )
    again = certctl("revoke", *base, "--cert", tmp_path / "v.pem", "--reason", "key-compromise")
    assert again.code == 0, again
    assert "was already revoked" in again.stdout


def test_chain_prints_intermediate_then_root_when_asked(
    stepca: StepCASetup, stepca_config: Path
) -> None:
    run = certctl("chain", "--type", "stepca", "--config", stepca_config)
    assert run.code == 0, run
    certs = x509.load_pem_x509_certificates(run.stdout.encode())
    root = x509.load_pem_x509_certificate(stepca.root.read_bytes())
    assert certs[-1] == root
    assert certs[0].issuer == root.subject


def test_check_passes_and_config_comes_from_environment_when_no_file_given(
    stepca: StepCASetup,
) -> None:
    run = certctl("check", "--type", "stepca", env=stepca.env())
    assert run.code == 0, run
    assert "settings from environment" in run.stdout
    assert "[ ok ] key_matches" in run.stdout
    assert "all checks passed" in run.stdout


def test_issue_works_from_environment_and_toml_when_type_from_env(
    stepca: StepCASetup, tmp_path: Path
) -> None:
    toml = stepca.config_file(tmp_path / "ca.toml")
    env = clean_env(CERTCTL_ISSUER_TYPE="stepca", CERTCTL_CONFIG=str(toml))
    run = certctl(
        "issue",
        "--cn",
        "t.cli.test",
        "--key-out",
        tmp_path / "t.key",
        "--out",
        tmp_path / "t.pem",
        env=env,
    )
    assert run.code == 0, run
    assert f"settings from config file {toml}" in run.stdout


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_exit_code_is_4_when_ca_is_unreachable(stepca: StepCASetup, tmp_path: Path) -> None:
    config = stepca.config_file(
        tmp_path / "down.json", ca_url=f"https://127.0.0.1:{_closed_port()}", max_retries=0
    )
    run = certctl(
        "issue",
        "--type",
        "stepca",
        "--config",
        config,
        "--cn",
        "d.cli.test",
        "--key-out",
        tmp_path / "d.key",
        "--out",
        tmp_path / "d.pem",
    )
    assert run.code == 4, run
    assert run.stderr.startswith("certctl: error: [stepca issuer stepca]")
    assert "Traceback" not in run.output
    assert not (tmp_path / "d.key").exists()  # nothing written on failure
    assert not (tmp_path / "d.pem").exists()
    check = certctl("check", "--type", "stepca", "--config", config)
    assert check.code == 6, check
    assert "[FAIL] reachable" in check.stdout


def test_exit_code_is_3_when_ca_rejects_the_request(stepca_config: Path, tmp_path: Path) -> None:
    run = certctl(
        "issue",
        "--json",
        "--type",
        "stepca",
        "--config",
        stepca_config,
        "--cn",
        "x.cli.test",
        "--key-out",
        tmp_path / "x.key",
        "--out",
        tmp_path / "x.pem",
        "--validity",
        "30d",
    )
    assert run.code == 3, run
    error = run.json()["error"]
    assert error["exit_code"] == 3
    assert error["type"] == "PolicyViolationError"
    assert "provisioner's maximum of 2 days" in run.stderr  # refused before spending a token
    assert not (tmp_path / "x.key").exists()


def test_exit_code_is_3_with_likely_cause_when_ca_refuses_credentials(
    stepca: StepCASetup, tmp_path: Path
) -> None:
    config = stepca.config_file(tmp_path / "auth.json", provisioner_name="no-such-provisioner")
    run = certctl("revoke", "--type", "stepca", "--config", config, "--serial", "12345", "--json")
    assert run.code == 3, run
    error = run.json()["error"]
    assert error["type"] == "AuthenticationError"
    assert error["likely_cause"]
    assert "likely cause:" in run.stderr


def test_config_error_lists_every_problem_and_exits_2_when_settings_missing(
    stepca: StepCASetup, tmp_path: Path
) -> None:
    (tmp_path / "bad.toml").write_text('ca_url = "http://nope"\nprovisioner_nmae = "x"\n')
    run = certctl("check", "--type", "stepca", "--config", tmp_path / "bad.toml")
    assert run.code == 2, run
    assert "invalid configuration" in run.stderr
    for field in ("ca_url", "provisioner_nmae", "provisioner_name", "provisioner_key_path"):
        assert f"  - {field}:" in run.stderr
    assert "Traceback" not in run.output


def test_no_secret_in_any_output_when_password_given_inline(
    stepca: StepCASetup, tmp_path: Path
) -> None:
    """The provisioner password and the decrypted key never reach stdout or stderr."""
    private_d = stepca.key.private_jwk_json
    good = stepca.config_file(
        tmp_path / "inline.json", provisioner_password=PASSWORD, provisioner_password_file=None
    )
    wrong_name = stepca.config_file(
        tmp_path / "wrong.json",
        provisioner_password=PASSWORD,
        provisioner_password_file=None,
        provisioner_name="nobody",
    )
    bad_pw = stepca.config_file(
        tmp_path / "badpw.json",
        provisioner_password=PASSWORD + "-wrong",
        provisioner_password_file=None,
    )
    runs = [
        certctl("-vv", "check", "--type", "stepca", "--config", good),
        certctl(
            "-vv",
            "issue",
            "--type",
            "stepca",
            "--config",
            good,
            "--cn",
            "s.cli.test",
            "--key-out",
            tmp_path / "s.key",
            "--out",
            tmp_path / "s.pem",
        ),
        certctl(
            "-vv", "revoke", "--json", "--type", "stepca", "--config", wrong_name, "--serial", "77"
        ),
        certctl("-vv", "check", "--json", "--type", "stepca", "--config", bad_pw),
        certctl(
            "-vv",
            "check",
            "--type",
            "stepca",
            env=stepca.env(CERTCTL_STEPCA_PASSWORD=PASSWORD, CERTCTL_STEPCA_PASSWORD_FILE=""),
        ),
    ]
    assert [r.code for r in runs] == [0, 0, 3, 2, 0], [str(r) for r in runs]
    import json as _json

    d = _json.loads(private_d)["d"]
    for run in runs:
        assert PASSWORD not in run.output, run
        assert d not in run.output, run
        assert "eyJ" not in run.output  # no JWT / JWE (base64url of '{"') in any output


def test_tls_problem_is_rejected_not_retried_when_root_is_wrong(
    stepca: StepCASetup, tmp_path: Path
) -> None:
    other = openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=other root",
        "-keyout",
        tmp_path / "o.key",
        "-out",
        tmp_path / "o.pem",
        "-days",
        "1",
    )
    assert other.returncode == 0, other.stderr
    config = stepca.config_file(tmp_path / "tls.json", root_cert_path=str(tmp_path / "o.pem"))
    run = certctl("chain", "--type", "stepca", "--config", config, "--json")
    assert run.code == 3, run  # an impostor TLS peer is permanent (ADR 0007)
    assert run.json()["ok"] is False
    assert "Traceback" not in run.output


@pytest.mark.parametrize("key_type", ["ec-p384", "ed25519", "rsa-3072"])
def test_generated_key_of_each_type_gets_a_verifiable_certificate(
    key_type: str, stepca: StepCASetup, stepca_config: Path, tmp_path: Path
) -> None:
    run = certctl(
        "issue",
        "--type",
        "stepca",
        "--config",
        stepca_config,
        "--cn",
        f"{key_type}.cli.test",
        "--key-type",
        key_type,
        "--key-out",
        tmp_path / "k.key",
        "--out",
        tmp_path / "k.pem",
    )
    assert run.code == 0, run
    key = serialization.load_pem_private_key((tmp_path / "k.key").read_bytes(), None)
    assert _spki(_cert(tmp_path / "k.pem")) == key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert verify_chain(tmp_path, tmp_path / "k.pem", stepca.root).returncode == 0


def test_ctrl_c_exits_130_without_traceback_when_ca_hangs(
    stepca: StepCASetup, tmp_path: Path
) -> None:
    import signal
    import subprocess

    from tests.cli.conftest import CERTCTL

    with socket.socket() as listener:  # accepts, then never says a word (no TLS handshake)
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        config = stepca.config_file(
            tmp_path / "hang.json", ca_url=f"https://127.0.0.1:{port}", timeout_seconds=60
        )
        process = subprocess.Popen(
            [str(CERTCTL), "check", "--type", "stepca", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        connection, _ = listener.accept()  # certctl is now waiting on the CA
        with connection:
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=60)
    assert process.returncode == 130, out + err
    assert err.strip() == "certctl: interrupted"
    assert "Traceback" not in out + err
