"""Self-tests of the step-ca harness against a real step-ca (no mocks)."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwcrypto.jwa
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from jwcrypto import jwe, jwk

from certctl_stepca.testing import (
    KEY_TYPES,
    OCSP_RESPONDER_TEMPLATE,
    PKI,
    STEPCA_MAIN_GO,
    ProvisionerKey,
    StepCA,
    StepCABuildError,
    StepCAReloadError,
    StepCAStartError,
    StepCAUnavailableError,
    allow_pbkdf2_iterations,
    default_cache_dir,
    ensure_step_ca_binary,
    generate_pki,
    make_provisioner_key,
    mint_token,
    provisioner_entry,
)

pytestmark = pytest.mark.stepca

OCSP_NOCHECK = x509.ObjectIdentifier("1.3.6.1.5.5.7.48.1.5")


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def binary() -> Path:
    return ensure_step_ca_binary(progress=lambda message: print(message, file=sys.stderr))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return generate_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def ec_key() -> ProvisionerKey:
    return make_provisioner_key("harness-ec", "ec-password")


@pytest.fixture(scope="module")
def ca(
    tmp_path_factory: pytest.TempPathFactory, binary: Path, pki: PKI, ec_key: ProvisionerKey
) -> Iterator[StepCA]:
    """One running CA for the tests that do not change its configuration."""
    with StepCA.create(
        tmp_path_factory.mktemp("ca"),
        binary=binary,
        pki=pki,
        provisioners=[provisioner_entry(ec_key)],
    ) as running:
        yield running
    assert not running.running


@pytest.fixture
def own_ca(tmp_path: Path, binary: Path, pki: PKI, ec_key: ProvisionerKey) -> Iterator[StepCA]:
    """A CA of the test's own (reload, kill, restart); it starts in about 30 ms."""
    fresh = StepCA.create(
        tmp_path / "ca", binary=binary, pki=pki, provisioners=[provisioner_entry(ec_key)]
    )
    try:
        fresh.start()
        yield fresh
    finally:
        fresh.stop()


# -- helpers ----------------------------------------------------------------------------------


def issue(ca: StepCA, key: ProvisionerKey, dns_name: str) -> list[x509.Certificate]:
    """Sign a fresh EC key's CSR through raw POST /1.0/sign; return the certChain."""
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
        .sign(leaf_key, hashes.SHA256())
    )
    token = mint_token(
        key, audience=f"{ca.localhost_url}/1.0/sign", subject=dns_name, sans=[dns_name]
    )
    body = {"csr": csr.public_bytes(serialization.Encoding.PEM).decode(), "ott": token}
    with ca.http_client() as client:
        response = client.post("/1.0/sign", json=body)
    assert response.status_code == 201, response.text
    chain = [x509.load_pem_x509_certificate(pem.encode()) for pem in response.json()["certChain"]]
    assert chain[0].public_key() == leaf_key.public_key()
    return chain


def openssl_verify(
    tmp_path: Path, pki: PKI, leaf: x509.Certificate
) -> subprocess.CompletedProcess[str]:
    leaf_path = tmp_path / "leaf.pem"
    leaf_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    return subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(pki.root_cert_path),
            "-untrusted",
            str(pki.intermediate_cert_path),
            str(leaf_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def listed_provisioners(ca: StepCA) -> list[dict[str, object]]:
    with ca.http_client() as client:
        response = client.get("/1.0/provisioners")
    assert response.status_code == 200
    provisioners: list[dict[str, object]] = response.json()["provisioners"]
    return provisioners


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# -- build ------------------------------------------------------------------------------------


def test_binary_is_reused_when_already_built(binary: Path) -> None:
    messages: list[str] = []
    started = time.monotonic()
    again = ensure_step_ca_binary(progress=messages.append)
    assert again == binary
    assert messages == []
    assert time.monotonic() - started < 1.0
    assert binary.parent.parent == default_cache_dir()
    assert os.access(binary, os.X_OK)


def test_binary_reports_its_version_when_run(binary: Path, tmp_path: Path) -> None:
    completed = subprocess.run(
        [str(binary), "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
        env={**os.environ, "STEPPATH": str(tmp_path / "step")},  # else it creates ~/.step
    )
    assert completed.stdout.startswith("step-ca version ")


def test_concurrent_cold_builds_build_once_when_sharing_a_cache(tmp_path: Path) -> None:
    # A fresh cache dir but the shared Go build cache: a real `go build` of ~2 s.
    messages: list[str] = []
    results: list[Path] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            results.append(
                ensure_step_ca_binary(
                    cache_dir=tmp_path,
                    progress=messages.append,
                    go_cache=default_cache_dir() / "go-build",
                )
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(messages) == 1
    assert "building step-ca" in messages[0]
    assert len(set(results)) == 1
    built = results[0]
    assert built.name == "step-ca"
    assert built.parent.parent == tmp_path
    assert os.access(built, os.X_OK)
    assert [p.name for p in built.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_unavailable_error_names_packages_when_go_is_missing(tmp_path: Path) -> None:
    with pytest.raises(StepCAUnavailableError, match="apt-get install golang-go"):
        ensure_step_ca_binary(cache_dir=tmp_path, go=str(tmp_path / "no-such-go"))


def test_unavailable_error_names_packages_when_sources_are_missing(tmp_path: Path) -> None:
    with pytest.raises(StepCAUnavailableError, match="golang-github-smallstep-certificates-dev"):
        ensure_step_ca_binary(cache_dir=tmp_path / "cache", gocode_root=tmp_path)


def test_build_error_carries_go_output_when_compilation_fails(tmp_path: Path) -> None:
    broken = tmp_path / "gocode" / "src/github.com/smallstep/certificates/commands"
    broken.mkdir(parents=True)
    (broken / "app.go").write_text("package commands\n\nthis is not go\n")
    with pytest.raises(StepCABuildError, match="cannot find package") as caught:
        ensure_step_ca_binary(
            cache_dir=tmp_path / "cache",
            gocode_root=tmp_path / "gocode",
            go_cache=tmp_path / "go-build",
        )
    assert "go build of step-ca failed" in str(caught.value)
    assert not list((tmp_path / "cache").glob("step-ca-*/step-ca"))


def test_go_main_uses_the_app_command() -> None:
    source = STEPCA_MAIN_GO.read_text()
    assert "package main" in source
    assert "commands.AppCommand.Action" in source


# -- PKI --------------------------------------------------------------------------------------


def test_pki_chains_and_constrains_paths_when_generated(tmp_path: Path) -> None:
    made = generate_pki(tmp_path, common_name_prefix="unit")
    root, intermediate = made.root_cert, made.intermediate_cert
    root.verify_directly_issued_by(root)
    intermediate.verify_directly_issued_by(root)
    root_bc = root.extensions.get_extension_for_class(x509.BasicConstraints).value
    intermediate_bc = intermediate.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert (root_bc.ca, root_bc.path_length) == (True, 1)
    assert (intermediate_bc.ca, intermediate_bc.path_length) == (True, 0)
    assert isinstance(made.intermediate_key, ec.EllipticCurvePrivateKey)
    assert made.intermediate_key.curve.name == "secp256r1"
    assert root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "unit Root CA"
    assert intermediate.issuer == root.subject
    lifetime = root.not_valid_after_utc - root.not_valid_before_utc
    assert lifetime.days >= 3650
    assert made.root_fingerprint == hashes_sha256_hex(root.public_bytes(serialization.Encoding.DER))
    assert made.root_pem == made.root_cert_path.read_bytes()
    assert stat.S_IMODE(made.intermediate_key_path.stat().st_mode) == 0o600
    assert made.intermediate_key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert PKI.load(tmp_path) == made


def hashes_sha256_hex(data: bytes) -> str:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize().hex()


# -- provisioner keys -------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", sorted(KEY_TYPES))
def test_provisioner_key_decrypts_with_its_password_when_either_form(key_type: str) -> None:
    key = make_provisioner_key(f"p-{key_type}", "pa55word", key_type=key_type)
    public = jwk.JWK(**key.public_jwk)
    assert public.thumbprint(hashes.SHA256()) == key.kid
    assert key.public_jwk["kid"] == key.kid
    assert key.public_jwk["alg"] == key.jws_alg == KEY_TYPES[key_type][1]
    assert "d" not in key.public_jwk

    for serialized in (key.encrypted_compact, key.encrypted_json):
        token = jwe.JWE()
        token.deserialize(serialized)
        header = json.loads(token.objects["protected"])
        assert header["cty"] == "jwk+json"
        assert header["p2c"] == 100_000
        assert (header["alg"], header["enc"]) == ("PBES2-HS256+A128KW", "A256GCM")
        with allow_pbkdf2_iterations(100_000):
            token.decrypt(jwk.JWK.from_password("pa55word"))
        private = json.loads(token.payload)
        assert private["kid"] == key.kid
        assert private["alg"] == key.jws_alg
        assert private == json.loads(key.private_jwk_json)
        assert jwk.JWK(**private).has_private

    assert set(json.loads(key.encrypted_json)) == {
        "protected",
        "encrypted_key",
        "iv",
        "ciphertext",
        "tag",
    }
    assert "pa55word" not in repr(key)
    assert '"d"' not in repr(key)


def test_provisioner_key_rejects_wrong_password_when_decrypting() -> None:
    key = make_provisioner_key("p", "right")
    token = jwe.JWE()
    token.deserialize(key.encrypted_compact)
    with allow_pbkdf2_iterations(100_000), pytest.raises(jwe.InvalidJWEData):
        token.decrypt(jwk.JWK.from_password("wrong"))


def test_pbkdf2_limit_is_restored_when_the_block_ends() -> None:
    before = jwcrypto.jwa.default_max_pbkdf2_iterations
    key = make_provisioner_key("p", "pw", p2c=600_000)
    assert jwcrypto.jwa.default_max_pbkdf2_iterations == before
    token = jwe.JWE()
    token.deserialize(key.encrypted_compact)
    with pytest.raises(jwe.InvalidJWEData):  # jwcrypto's own limit still applies outside
        token.decrypt(jwk.JWK.from_password("pw"))
    with allow_pbkdf2_iterations(600_000):
        with allow_pbkdf2_iterations(200_000):
            assert jwcrypto.jwa.default_max_pbkdf2_iterations == 600_000
        assert jwcrypto.jwa.default_max_pbkdf2_iterations == 600_000
        token.decrypt(jwk.JWK.from_password("pw"))
    assert jwcrypto.jwa.default_max_pbkdf2_iterations == before
    with pytest.raises(ValueError, match="iterations"), allow_pbkdf2_iterations(10**9):
        pass


def test_key_and_password_files_are_private_when_written(tmp_path: Path) -> None:
    key = make_provisioner_key("p", "secret")
    compact = key.write_key_file(tmp_path / "compact", form="compact")
    flattened = key.write_key_file(tmp_path / "json", form="json")
    with_newline = key.write_password_file(tmp_path / "pw1")
    without = key.write_password_file(tmp_path / "pw2", trailing_newline=False)
    assert compact.read_text() == key.encrypted_compact
    assert json.loads(flattened.read_text())["protected"] == key.encrypted_compact.split(".")[0]
    assert with_newline.read_text() == "secret\n"
    assert without.read_text() == "secret"
    for path in (compact, flattened, with_newline, without):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_unknown_key_type_is_rejected_when_making_a_key() -> None:
    with pytest.raises(ValueError, match="unknown key type"):
        make_provisioner_key("p", "pw", key_type="DSA-1024")


def test_provisioner_entry_has_step_ca_shape_when_built() -> None:
    key = make_provisioner_key("p", "pw")
    plain = provisioner_entry(key)
    assert plain == {
        "type": "JWK",
        "name": "p",
        "key": key.public_jwk,
        "encryptedKey": key.encrypted_compact,
    }
    full = provisioner_entry(
        key,
        claims={
            "minTLSCertDuration": "1m",
            "maxTLSCertDuration": "2h",
            "defaultTLSCertDuration": "1h",
        },
        x509_template=OCSP_RESPONDER_TEMPLATE,
    )
    assert full["claims"]["defaultTLSCertDuration"] == "1h"
    assert full["options"] == {"x509": {"template": OCSP_RESPONDER_TEMPLATE}}


@pytest.mark.parametrize(
    "claims",
    [
        {"maxTLSCertDuration": "1h"},  # the 24h default would exceed it
        {"minTLSCertDuration": "2h", "defaultTLSCertDuration": "1h"},
        {"defaultTLSCertDuration": "ten minutes"},
        {"maxTlsCertDuration": "1h"},
    ],
)
def test_provisioner_entry_rejects_claims_when_step_ca_would(claims: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=r"TLSCertDuration|Go duration|unknown"):
        provisioner_entry(make_provisioner_key("p", "pw"), claims=claims)


# -- a running CA -----------------------------------------------------------------------------


def test_health_answers_when_started_quickly(ca: StepCA) -> None:
    assert ca.running
    assert ca.pid is not None
    assert ca.last_startup_s is not None
    assert ca.last_startup_s < 5.0
    with ca.http_client() as client:
        response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert ca.url == f"https://127.0.0.1:{ca.port}"
    assert ca.localhost_url == f"https://localhost:{ca.port}"


def test_tls_is_refused_when_the_client_trusts_another_root(ca: StepCA, tmp_path: Path) -> None:
    other = generate_pki(tmp_path)
    with (
        httpx.Client(
            verify=ssl.create_default_context(cafile=str(other.root_cert_path)), trust_env=False
        ) as client,
        pytest.raises(httpx.ConnectError),
    ):
        client.get(f"{ca.url}/health")


def test_provisioners_list_the_configured_key(ca: StepCA, ec_key: ProvisionerKey) -> None:
    (listed,) = listed_provisioners(ca)
    assert listed["name"] == ec_key.name
    assert listed["type"] == "JWK"
    assert listed["encryptedKey"] == ec_key.encrypted_compact
    assert isinstance(listed["key"], dict)
    assert listed["key"]["kid"] == ec_key.kid


def test_sign_returns_a_chain_openssl_verifies(
    ca: StepCA, pki: PKI, ec_key: ProvisionerKey, tmp_path: Path
) -> None:
    chain = issue(ca, ec_key, "sign.testing.test")
    assert len(chain) == 2
    leaf, intermediate = chain
    assert intermediate == pki.intermediate_cert
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["sign.testing.test"]
    verified = openssl_verify(tmp_path, pki, leaf)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.strip().endswith(": OK")


def test_sign_refuses_a_replayed_token(ca: StepCA, ec_key: ProvisionerKey) -> None:
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "replay.test")]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("replay.test")]), critical=False)
        .sign(leaf_key, hashes.SHA256())
    )
    token = mint_token(
        ec_key, audience=f"{ca.localhost_url}/1.0/sign", subject="replay.test", sans=["replay.test"]
    )
    body = {"csr": csr.public_bytes(serialization.Encoding.PEM).decode(), "ott": token}
    with ca.http_client() as client:
        assert client.post("/1.0/sign", json=body).status_code == 201
        assert client.post("/1.0/sign", json=body).status_code == 401


def test_revoke_succeeds_when_the_token_has_the_revoke_audience(
    ca: StepCA, ec_key: ProvisionerKey
) -> None:
    leaf = issue(ca, ec_key, "revoke.testing.test")[0]
    serial = str(leaf.serial_number)

    def body(audience: str) -> dict[str, object]:
        token = mint_token(ec_key, audience=f"{ca.localhost_url}{audience}", subject=serial)
        return {"serial": serial, "ott": token, "reasonCode": 1, "reason": "test", "passive": True}

    with ca.http_client() as client:
        wrong = client.post("/1.0/revoke", json=body("/1.0/sign"))
        right = client.post("/1.0/revoke", json=body("/1.0/revoke"))
        again = client.post("/1.0/revoke", json=body("/1.0/revoke"))
    assert wrong.status_code == 401
    assert right.status_code == 200, right.text
    assert right.json() == {"status": "ok"}
    assert again.status_code == 400


def test_ocsp_template_yields_a_delegated_responder_certificate(own_ca: StepCA) -> None:
    responder = make_provisioner_key("ocsp", "ocsp-pw")
    own_ca.add_provisioner(provisioner_entry(responder, x509_template=OCSP_RESPONDER_TEMPLATE))
    leaf = issue(own_ca, responder, "ocsp.testing.test")[0]
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.OCSP_SIGNING]
    nocheck = leaf.extensions.get_extension_for_oid(OCSP_NOCHECK)
    assert nocheck.value.public_bytes() == b"\x05\x00"


@pytest.mark.parametrize("key_type", ["OKP-Ed25519", "RSA-2048", "EC-P384", "EC-P521"])
def test_reload_adds_a_provisioner_that_can_issue(own_ca: StepCA, key_type: str) -> None:
    second = make_provisioner_key(f"second-{key_type}", "second-pw", key_type=key_type)
    pid = own_ca.pid
    own_ca.add_provisioner(provisioner_entry(second))
    assert own_ca.pid == pid  # reloaded in place, not restarted
    names = sorted(str(p["name"]) for p in listed_provisioners(own_ca))
    assert names == sorted(["harness-ec", second.name])
    leaf = issue(own_ca, second, "second.testing.test")[0]
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "second.testing.test"
    )


def test_reload_removes_a_provisioner(own_ca: StepCA, ec_key: ProvisionerKey) -> None:
    other = make_provisioner_key("other", "other-pw")
    own_ca.add_provisioner(provisioner_entry(other))
    own_ca.remove_provisioner(ec_key.name)
    assert [p["name"] for p in listed_provisioners(own_ca)] == ["other"]
    issue(own_ca, other, "still.testing.test")
    with pytest.raises(KeyError):
        own_ca.remove_provisioner("absent")


def test_reload_error_keeps_the_old_config_when_step_ca_rejects_it(
    own_ca: StepCA, ec_key: ProvisionerKey
) -> None:
    bad = provisioner_entry(make_provisioner_key("bad", "bad-pw"))
    # Bypasses provisioner_entry's check on purpose: default above max.
    bad["claims"] = {"maxTLSCertDuration": "1h", "defaultTLSCertDuration": "2h"}
    own_ca.set_provisioners([provisioner_entry(ec_key), bad])
    with pytest.raises(StepCAReloadError, match="rejected"):
        own_ca.reload()
    assert own_ca.running
    assert [p["name"] for p in listed_provisioners(own_ca)] == [ec_key.name]
    issue(own_ca, ec_key, "old-config.testing.test")


def test_restart_after_kill_keeps_port_and_database(own_ca: StepCA, ec_key: ProvisionerKey) -> None:
    leaf = issue(own_ca, ec_key, "before-kill.testing.test")[0]
    port, pid = own_ca.port, own_ca.pid
    assert pid is not None
    own_ca.kill()
    assert not own_ca.running
    assert own_ca.pid is None
    assert not process_exists(pid)

    own_ca.restart()
    assert own_ca.running
    assert own_ca.port == port
    assert own_ca.pid != pid
    issue(own_ca, ec_key, "after-kill.testing.test")
    # Revoke once (200), then again (400 "already revoked"): the revocation is in the db.
    serial = str(leaf.serial_number)
    with own_ca.http_client() as client:
        for expected in (200, 400):
            token = mint_token(
                ec_key, audience=f"{own_ca.localhost_url}/1.0/revoke", subject=serial
            )
            response = client.post(
                "/1.0/revoke", json={"serial": serial, "ott": token, "passive": True}
            )
            assert response.status_code == expected, response.text
    # The badger db survives a SIGKILL: the revocation is still known afterwards.
    own_ca.kill()
    own_ca.restart()
    token = mint_token(ec_key, audience=f"{own_ca.localhost_url}/1.0/revoke", subject=serial)
    with own_ca.http_client() as client:
        response = client.post(
            "/1.0/revoke", json={"serial": serial, "ott": token, "passive": True}
        )
    assert response.status_code == 400
    assert "already" in response.json()["message"]


def test_stop_leaves_no_process(own_ca: StepCA) -> None:
    pid = own_ca.pid
    assert pid is not None
    own_ca.stop()
    assert not own_ca.running
    assert not process_exists(pid)
    own_ca.stop()  # idempotent


def test_start_moves_to_a_free_port_when_its_port_is_taken(
    tmp_path: Path, binary: Path, pki: PKI, ec_key: ProvisionerKey
) -> None:
    fresh = StepCA.create(
        tmp_path, binary=binary, pki=pki, provisioners=[provisioner_entry(ec_key)]
    )
    taken = fresh.port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        with fresh:
            assert fresh.port != taken
            assert json.loads(fresh.config_path.read_text())["address"] == f"127.0.0.1:{fresh.port}"
            with fresh.http_client() as client:
                assert client.get("/health").status_code == 200
    assert "address already in use" in fresh.log_path.read_text()


def test_start_error_carries_the_log_when_config_is_invalid(
    tmp_path: Path, binary: Path, pki: PKI, ec_key: ProvisionerKey
) -> None:
    entry = provisioner_entry(ec_key)
    entry["claims"] = {"minTLSCertDuration": "2h", "defaultTLSCertDuration": "1h"}
    broken = StepCA.create(tmp_path, binary=binary, pki=pki, provisioners=[entry])
    with pytest.raises(StepCAStartError, match="exited with code") as caught:
        broken.start(timeout=10)
    assert "TLSCertDuration" in str(caught.value) or "duration" in str(caught.value).lower()
    assert not broken.running


def test_create_rejects_dns_names_when_loopback_is_missing(tmp_path: Path, binary: Path) -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
        StepCA.create(tmp_path, binary=binary, provisioners=[], dns_names=["ca.example"])


def test_start_recovers_when_step_ca_died_on_its_own(own_ca: StepCA) -> None:
    pid = own_ca.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # behind the harness's back
    deadline = time.monotonic() + 5
    while own_ca.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not own_ca.running
    own_ca.start()
    assert own_ca.running
    assert own_ca.pid != pid


def test_forgotten_ca_is_killed_when_the_interpreter_exits(tmp_path: Path, binary: Path) -> None:
    script = f"""
import sys
from pathlib import Path
from certctl_stepca.testing import StepCA, make_provisioner_key, provisioner_entry
key = make_provisioner_key("p", "pw")
ca = StepCA.create(Path({str(tmp_path)!r}), binary=Path({str(binary)!r}),
                   provisioners=[provisioner_entry(key)])
ca.start()
print(ca.pid, flush=True)
"""
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    pid = int(completed.stdout.strip())
    assert not process_exists(pid)
