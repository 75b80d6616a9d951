"""Issue 15: rotation and configuration, against the real server and a real step-ca.

Files rotated in place, the rebuild endpoint and SIGHUP, masked secrets bound to what they
unlock, configs the CA refuses, every PUT problem at once, repeated revocation, the
unauthenticated CRL endpoint's errors, and seeding from the environment.
"""

from __future__ import annotations

import base64
import json
import secrets
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from jwcrypto import jwe, jwk

from certctl_host.storage import MASK
from certctl_stepca._keyfile import allow_pbkdf2_iterations
from tests.server.conftest import (
    CA,
    PASSWORD,
    Server,
    issue,
    stepca_body,
)
from tests.server.test_api import assert_problem

pytestmark = pytest.mark.stepca

NEW_PASSWORD = "rotated provisioner password 0123"


def reencrypt(ca: CA, password: str) -> str:
    """The provisioner's private key encrypted anew under ``password`` (JSON JWE form),
    as an operator rotating the key file's password writes it."""
    salt = base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()
    protected = {
        "alg": "PBES2-HS256+A128KW",
        "enc": "A256GCM",
        "cty": "jwk+json",
        "p2c": 1000,
        "p2s": salt,
    }
    token = jwe.JWE(plaintext=ca.key.private_jwk_json.encode(), protected=json.dumps(protected))
    with allow_pbkdf2_iterations(1000):
        token.add_recipient(jwk.JWK.from_password(password))
    flat = json.loads(token.serialize())
    return json.dumps(
        {k: flat[k] for k in ("protected", "encrypted_key", "iv", "ciphertext", "tag")}
    )


def file_body(ca: CA, directory: Path, **overrides: Any) -> dict[str, Any]:
    """A step-ca issuer whose key and password are files in ``directory`` (copies)."""
    directory.mkdir(parents=True, exist_ok=True)
    key_file = directory / "provisioner.json"
    key_file.write_text(ca.key.encrypted_json)
    password_file = directory / "password.txt"
    password_file.write_text(PASSWORD + "\n")
    config = ca.config(
        provisioner_password=None,
        provisioner_password_file=str(password_file),
        provisioner_key_path=str(key_file),
        **overrides,
    )
    return {"type": "stepca", "config": config}


def rotate_in_place(directory: Path, ca: CA, password: str, *, password_too: bool = True) -> None:
    (directory / "provisioner.json").write_text(reencrypt(ca, password))
    if password_too:
        (directory / "password.txt").write_text(password + "\n")


def fields_of(problem: dict[str, Any]) -> list[str]:
    errors: list[dict[str, Any]] = problem["errors"]
    return [e["field"] for e in errors]


def status(server: Server, issuer_id: str) -> dict[str, Any]:
    with server.client() as client:
        body: dict[str, Any] = client.get(f"/api/v1/issuers/{issuer_id}").json()
    return body


# -- 1. files rotated in place -------------------------------------------------------


def test_put_of_unchanged_config_rebuilds_when_key_files_changed_in_place(
    server: Server, stepca: CA, tmp_path: Path
) -> None:
    body = file_body(stepca, tmp_path / "files")
    assert server.put("rot", body).status_code == 201
    assert status(server, "rot")["status"]["generation"] is not None
    before = status(server, "rot")["status"]["generation"]

    rotate_in_place(tmp_path / "files", stepca, NEW_PASSWORD)
    again = server.put("rot", body)

    assert again.status_code == 200, again.text
    assert again.json()["status"]["generation"] > before  # a new connector read the files
    issue(server, "rot")
    # Nothing changed since: the same PUT is a no-op again.
    third = server.put("rot", body)
    assert third.json()["status"]["generation"] == again.json()["status"]["generation"]


def test_put_of_unchanged_config_is_refused_when_rotated_files_do_not_match(
    server: Server, stepca: CA, tmp_path: Path
) -> None:
    body = file_body(stepca, tmp_path / "files")
    assert server.put("rot", body).status_code == 201
    # Key re-encrypted, password file not updated: the files no longer work together.
    rotate_in_place(tmp_path / "files", stepca, NEW_PASSWORD, password_too=False)

    problem = assert_problem(server.put("rot", body), 422)

    assert "provisioner" in json.dumps(problem["errors"])
    assert PASSWORD not in json.dumps(problem) and NEW_PASSWORD not in json.dumps(problem)
    issue(server, "rot")  # the old generation keeps serving


def test_rebuild_endpoint_rebuilds_from_stored_config_and_keeps_old_on_failure(
    server: Server, stepca: CA, tmp_path: Path
) -> None:
    assert server.put("rot", file_body(stepca, tmp_path / "files")).status_code == 201
    before = status(server, "rot")["status"]["generation"]
    with server.client() as client:
        assert_problem(client.post("/api/v1/issuers/nope/rebuild"), 404)
        rebuilt = client.post("/api/v1/issuers/rot/rebuild")
        assert rebuilt.status_code == 200, rebuilt.text
        generation = rebuilt.json()["status"]["generation"]
        assert generation > before
        assert rebuilt.json()["revision"] == status(server, "rot")["revision"]

        rotate_in_place(tmp_path / "files", stepca, NEW_PASSWORD, password_too=False)
        assert_problem(client.post("/api/v1/issuers/rot/rebuild"), 422)
    assert status(server, "rot")["status"]["generation"] == generation
    issue(server, "rot")


def test_sighup_rebuilds_issuers_whose_files_changed(
    server: Server, stepca: CA, tmp_path: Path
) -> None:
    assert server.put("rot", file_body(stepca, tmp_path / "files")).status_code == 201
    assert server.put("same", file_body(stepca, tmp_path / "same")).status_code == 201
    rot, same = (status(server, i)["status"]["generation"] for i in ("rot", "same"))
    rotate_in_place(tmp_path / "files", stepca, NEW_PASSWORD)

    assert server.process is not None
    server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while status(server, "rot")["status"]["generation"] == rot:
        assert time.monotonic() < deadline, server.log_text()
        time.sleep(0.1)

    assert status(server, "same")["status"]["generation"] == same
    issue(server, "rot")
    log = server.log_text()
    assert "reload: issuer rot rebuilt" in log
    assert "reload: issuer same unchanged" in log
    assert NEW_PASSWORD not in log and PASSWORD not in log


# -- 5. a masked secret is bound to what it unlocks ----------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"provisioner_name": "ocsp-responder"},
        {"ca_url": "https://127.0.0.1:1"},
    ],
)
def test_masked_password_is_refused_when_a_field_it_unlocks_changes(
    server: Server, stepca: CA, change: dict[str, str]
) -> None:
    assert server.put("corp", stepca_body(stepca, responder=False)).status_code == 201
    body = stepca_body(stepca, responder=False, provisioner_password=MASK, **change)

    problem = assert_problem(server.put("corp", body), 422)

    fields = fields_of(problem)
    assert "config.provisioner_password" in fields
    assert PASSWORD not in json.dumps(problem)
    # Unchanged scope: the placeholder still keeps the stored secret; resent: accepted.
    assert server.put("corp", stepca_body(stepca, responder=False, provisioner_password=MASK))
    resent = server.put("corp", stepca_body(stepca, responder=False, **change))
    assert resent.status_code == 200, resent.text


# -- 4. an OCSP responder that cannot be built -------------------------------------


def test_put_is_refused_when_its_ocsp_responder_cannot_obtain_a_certificate(
    server: Server, stepca: CA
) -> None:
    assert server.put("corp", stepca_body(stepca)).status_code == 201
    body = stepca_body(stepca)
    body["ocsp_responder"] = {"config": {"provisioner_name": "no-such-provisioner"}}

    problem = assert_problem(server.put("corp", body), 422)

    assert fields_of(problem) == ["ocsp_responder"]
    view = status(server, "corp")
    assert view["ocsp_responder"]["config"]["provisioner_name"] == "ocsp-responder"
    assert view["status"]["ocsp"] == "delegated"


# -- 6. a validity the CA refuses -----------------------------------------------------


def test_put_is_refused_when_validity_exceeds_the_provisioner_maximum(
    server: Server, stepca: CA
) -> None:
    problem = assert_problem(
        server.put("corp", stepca_body(stepca, responder=False, validity_days=5)), 422
    )
    fields = fields_of(problem)
    assert fields == ["config.validity_days"]
    with server.client() as client:
        assert_problem(client.get("/api/v1/issuers/corp"), 404)
    # Within the maximum (48h): accepted.
    ok = server.put("corp", stepca_body(stepca, responder=False, validity_days=1))
    assert ok.status_code == 201, ok.text


# -- 7. every problem at once ---------------------------------------------------------


def test_unknown_top_level_field_is_reported_with_the_config_errors(
    server: Server, stepca: CA
) -> None:
    body = stepca_body(stepca, responder=False, ca_url="http://no-tls.example", max_retries=99)
    body["colour"] = "blue"

    problem = assert_problem(server.put("corp", body), 422)

    fields = sorted(fields_of(problem))
    assert fields == ["colour", "config.ca_url", "config.max_retries"]


# -- 8. revoking twice ----------------------------------------------------------------


def test_second_revocation_reports_the_recorded_reason(server: Server, stepca: CA) -> None:
    assert server.put("corp", stepca_body(stepca, responder=False)).status_code == 201
    serial = "0x" + issue(server, "corp")["serial"]
    with server.client() as client:
        first = client.post(
            "/api/v1/issuers/corp/revocations", json={"serial": serial, "reason": "keyCompromise"}
        )
        second = client.post(
            "/api/v1/issuers/corp/revocations", json={"serial": serial, "reason": "superseded"}
        )
    assert first.status_code == 201, first.text
    assert second.status_code == 200, second.text
    assert second.json()["already_revoked"] is True
    assert second.json()["reason"] == "keyCompromise"
    assert second.json()["reason_code"] == 1
    assert second.json()["revoked_at"] == first.json()["revoked_at"]


# -- 9. the unauthenticated CRL endpoint keeps config errors to itself ----------------


def test_crl_endpoint_503_does_not_show_config_errors(
    server: Server, stepca: CA, tmp_path: Path
) -> None:
    root = tmp_path / "secret-dir" / "root.crt"
    root.parent.mkdir()
    root.write_bytes(stepca.process.root_file.read_bytes())
    body = stepca_body(stepca, responder=False, root_cert_path=str(root), crl_enabled=True)
    assert server.put("corp", body).status_code == 201
    root.unlink()
    server.restart()  # the stored config no longer builds: the issuer is not served

    with server.client(token=None) as client:
        response = client.get("/.well-known/pki/crl/corp")
    problem = assert_problem(response, 503)
    assert "secret-dir" not in response.text
    assert "Retry-After" in response.headers
    assert problem["issuer_id"] == "corp"
    # The authenticated API still tells the operator why.
    assert "secret-dir" in json.dumps(status(server, "corp")["status"]["error"])


# -- 2. seeding from the environment --------------------------------------------------


def test_empty_store_is_seeded_with_iss_stepca_from_the_environment(
    tmp_path: Path, stepca: CA
) -> None:
    server = Server(tmp_path)
    server.env.update(
        {
            "CERTCTL_STEPCA_URL": stepca.process.url,
            "CERTCTL_STEPCA_PROVISIONER": stepca.key.name,
            "CERTCTL_STEPCA_KEY_PATH": str(stepca.key_file),
            "CERTCTL_STEPCA_PASSWORD": PASSWORD,
            "CERTCTL_STEPCA_ROOT_CERT": str(stepca.process.root_file),
        }
    )
    server.start()
    try:
        view = status(server, "iss-stepca")
        assert view["type"] == "stepca"
        assert view["config"]["provisioner_password"] == MASK
        assert view["status"]["serving"] is True, view
        issue(server, "iss-stepca")
        # Not seeded again over an existing store (here: after a PUT changed it).
        assert server.put("other", stepca_body(stepca, responder=False)).status_code == 201
        server.restart()
        assert status(server, "iss-stepca")["revision"] == view["revision"]
    finally:
        server.stop()
    assert PASSWORD not in server.log_text()
    assert "iss-stepca" in server.log_text()
