"""Stored certificate profiles against the real server: CRUD with revisions, the policy a
profile applies by name on issuance (max TTL, key types, EKUs), and a data directory of
the schema before profiles, migrated on start."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certctl_host.storage import DB_FILE
from tests.server.conftest import CA, TOKEN, Server, localca_body, make_csr, stepca_body
from tests.server.test_api import assert_problem
from tests.server.test_consistency import wait_for_log, write_locked

#: NotBefore is backdated by one minute (Local CA and step-ca), and X.509 times have whole
#: seconds: a certificate's span is at most the cap plus this.
BACKDATE = dt.timedelta(minutes=1, seconds=2)
#: The Local CA's default usage profile gives serverAuth and clientAuth.
WEB = {
    "max_ttl_seconds": 3600,
    "key_types": ["ec-p256", "rsa-3072+"],
    "ekus": ["serverAuth", "clientAuth"],
}


def put_profile(server: Server, name: str, body: Any) -> httpx.Response:
    with server.client() as client:
        return client.put(f"/api/v1/profiles/{name}", json=body)


def request_certificate(server: Server, issuer_id: str, **body: Any) -> httpx.Response:
    body.setdefault("csr", make_csr()[0])
    with server.client() as client:
        return client.post(f"/api/v1/issuers/{issuer_id}/certificates", json=body)


def leaf(response: httpx.Response) -> x509.Certificate:
    assert response.status_code == 201, response.text
    return x509.load_pem_x509_certificate(response.json()["certificate"].encode())


def lifetime(certificate: x509.Certificate) -> dt.timedelta:
    return certificate.not_valid_after_utc - certificate.not_valid_before_utc


def csr_with(key: CertificateIssuerPrivateKeyTypes, name: str = "svc.example.test") -> str:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def ekus(certificate: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


@pytest.fixture
def local(server: Server, tmp_path: Path) -> Server:
    assert server.put("ca1", localca_body(tmp_path / "state")).status_code == 201
    return server


# -- issuance under a stored profile ----------------------------------------------------


def test_stored_profile_caps_validity_when_issuing(local: Server) -> None:
    assert put_profile(local, "web", WEB).status_code == 201
    cap = dt.timedelta(seconds=WEB["max_ttl_seconds"])  # type: ignore[arg-type]
    # Asked for a day (and for the CA's default of 90 days): the profile's hour wins.
    for extra in ({"validity_seconds": 86400}, {}):
        certificate = leaf(request_certificate(local, "ca1", profile="web", **extra))
        assert lifetime(certificate) <= cap + BACKDATE
        assert lifetime(certificate) >= cap
    # An inline max_ttl_seconds only tightens the stored one.
    inline = {"name": "web", "max_ttl_seconds": 600}
    assert (
        lifetime(leaf(request_certificate(local, "ca1", profile=inline)))
        <= dt.timedelta(seconds=600) + BACKDATE
    )
    loose = {"name": "web", "max_ttl_seconds": 86400}
    assert lifetime(leaf(request_certificate(local, "ca1", profile=loose))) <= cap + BACKDATE


@pytest.mark.stepca
def test_stored_profile_caps_step_ca_validity_when_issuing(server: Server, stepca: CA) -> None:
    assert server.put("corp", stepca_body(stepca, responder=False)).status_code == 201
    assert put_profile(server, "short", {"max_ttl_seconds": 1800}).status_code == 201
    # The provisioner allows 48 h and defaults to 24 h; the profile allows 30 minutes.
    certificate = leaf(
        request_certificate(server, "corp", profile="short", validity_seconds=40 * 3600)
    )
    assert lifetime(certificate) <= dt.timedelta(seconds=1800) + BACKDATE


def test_request_without_profile_uses_the_stored_default_profile(local: Server) -> None:
    # No stored default: nothing is capped (the Local CA's default is 90 days).
    assert lifetime(leaf(request_certificate(local, "ca1"))) > dt.timedelta(days=30)
    assert lifetime(leaf(request_certificate(local, "ca1", profile="default"))) > dt.timedelta(
        days=30
    )
    assert put_profile(local, "default", {"max_ttl_seconds": 7200}).status_code == 201
    for body in ({}, {"profile": "default"}, {"profile": ""}):
        certificate = leaf(request_certificate(local, "ca1", **body))
        assert lifetime(certificate) <= dt.timedelta(hours=2) + BACKDATE


def test_unknown_profile_is_422_naming_it_and_the_known_ones(local: Server) -> None:
    assert put_profile(local, "web", WEB).status_code == 201
    assert put_profile(local, "api", {}).status_code == 201
    for profile in ("mail", {"name": "mail", "max_ttl_seconds": 60}, "bad name/../x"):
        problem = assert_problem(request_certificate(local, "ca1", profile=profile), 422)
        assert problem["type"] == "urn:certctl:problem:unknown-profile"
        name = profile["name"] if isinstance(profile, dict) else profile
        assert problem["profile"] == name
        assert repr(name) in str(problem["detail"])
        assert problem["known_profiles"] == ["api", "web"]
        assert "api, web" in str(problem["hint"])
    # An unknown issuer is still a 404, before the profile is looked at.
    assert_problem(request_certificate(local, "nobody", profile="mail"), 404)


def test_key_type_the_profile_does_not_allow_is_422(local: Server) -> None:
    assert put_profile(local, "web", WEB).status_code == 201
    refused: dict[str, CertificateIssuerPrivateKeyTypes] = {
        "ec-p384": ec.generate_private_key(ec.SECP384R1()),
        "rsa-2048": rsa.generate_private_key(65537, 2048),
    }
    for key_type, key in refused.items():
        response = request_certificate(local, "ca1", profile="web", csr=csr_with(key))
        problem = assert_problem(response, 422)
        assert problem["type"] == "urn:certctl:problem:policy-violation"
        assert f"the CSR's key is {key_type}" in str(problem["detail"])
        assert "ec-p256, rsa-3072+" in str(problem["detail"])
    # rsa-3072+ takes a larger modulus; ec-p256 is allowed; without the profile, anything.
    leaf(
        request_certificate(
            local, "ca1", profile="web", csr=csr_with(rsa.generate_private_key(65537, 4096))
        )
    )
    leaf(request_certificate(local, "ca1", profile="web"))
    leaf(request_certificate(local, "ca1", csr=csr_with(refused["ec-p384"])))


def test_certificate_with_ekus_outside_the_profile_is_refused(local: Server) -> None:
    # The Local CA issues its default usage profile (serverAuth + clientAuth) for a name
    # it has no usage profile of its own for,
    # and clientAuth only for its "tls-client" profile.
    assert put_profile(local, "server-only", {"ekus": ["serverAuth"]}).status_code == 201
    assert put_profile(local, "tls-client", {"ekus": ["clientAuth"]}).status_code == 201
    problem = assert_problem(request_certificate(local, "ca1", profile="server-only"), 422)
    assert problem["type"] == "urn:certctl:problem:policy-violation"
    assert "extended key usages clientAuth" in str(problem["detail"])
    certificate = leaf(request_certificate(local, "ca1", profile="tls-client"))
    assert ekus(certificate) == {ExtendedKeyUsageOID.CLIENT_AUTH}


# -- the profile API --------------------------------------------------------------------


def test_profile_crud_with_revisions(local: Server) -> None:
    with local.client() as client:
        assert client.get("/api/v1/profiles").json() == {"profiles": []}
        created = client.put("/api/v1/profiles/web", json=WEB)
        assert created.status_code == 201, created.text
        body = created.json()
        assert {k: body[k] for k in WEB} == WEB
        assert body["name"] == "web"
        first = body["revision"]
        assert body["updated_at"]
        assert client.get("/api/v1/profiles/web").json() == body
        # Names and OIDs are kept canonical: duplicates dropped, a known OID named.
        replaced = client.put(
            "/api/v1/profiles/web",
            json={"ekus": ["serverAuth", "1.3.6.1.5.5.7.3.2", "serverAuth", "1.2.3.4"]},
        )
        assert replaced.status_code == 200, replaced.text
        assert replaced.json()["ekus"] == ["serverAuth", "clientAuth", "1.2.3.4"]
        assert "max_ttl_seconds" not in replaced.json()
        assert replaced.json()["revision"] > first
        listed = client.get("/api/v1/profiles").json()["profiles"]
        assert [p["name"] for p in listed] == ["web"]
        assert client.delete("/api/v1/profiles/web").status_code == 204
        assert_problem(client.get("/api/v1/profiles/web"), 404)
        assert_problem(client.delete("/api/v1/profiles/web"), 404)
        assert_problem(client.get("/api/v1/profiles/..x"), 404)
    # Deleted: naming it is refused again.
    assert_problem(request_certificate(local, "ca1", profile="web"), 422)


def test_invalid_profile_reports_every_problem_at_once(server: Server) -> None:
    body = {
        "max_ttl": 3600,
        "max_ttl_seconds": "3600",
        "key_types": ["ec-p256", "rsa-2048", 7],
        "ekus": ["serverauth", "1.2.x"],
    }
    problem = assert_problem(put_profile(server, "web", body), 422)
    assert problem["type"] == "urn:certctl:problem:invalid-config"
    errors = {e["field"]: e for e in problem["errors"]}  # type: ignore[attr-defined]
    assert set(errors) == {
        "max_ttl",
        "max_ttl_seconds",
        "key_types[1]",
        "key_types[2]",
        "ekus[0]",
        "ekus[1]",
    }
    assert errors["max_ttl"]["hint"] == "did you mean 'max_ttl_seconds'?"
    assert errors["key_types[1]"]["hint"] == "did you mean 'rsa-2048+'?"
    assert errors["ekus[0]"]["hint"] == "did you mean 'serverAuth'?"
    bad: dict[str, Any]
    for bad in ({"max_ttl_seconds": 0}, {"max_ttl_seconds": 1.5}, {"key_types": []}):
        assert_problem(put_profile(server, "web", bad), 422)
    name = assert_problem(put_profile(server, "-web", {}), 422)
    assert [e["field"] for e in name["errors"]] == ["name"]  # type: ignore[attr-defined]
    with server.client() as client:
        assert client.get("/api/v1/profiles").json() == {"profiles": []}


def test_concurrent_profile_writer_gets_409_and_nothing_changes(server: Server) -> None:
    revision = put_profile(server, "web", WEB).json()["revision"]
    answers: list[httpx.Response] = []
    with write_locked(server) as other:
        thread = threading.Thread(
            target=lambda: answers.append(put_profile(server, "web", {"max_ttl_seconds": 60})),
            daemon=True,
        )
        thread.start()
        # The PUT read revision N and now waits for the store's write lock.
        wait_for_log(server, f"profile web: writing the store (expected revision {revision})")
        # Another writer changes the profile meanwhile (a replica, a second admin).
        other.execute("UPDATE profiles SET revision = ? WHERE name = 'web'", (revision + 5,))
    thread.join(60)
    assert answers, "the PUT never answered"
    problem = assert_problem(answers[0], 409)
    assert problem["type"] == "urn:certctl:problem:conflict"
    assert f"profile 'web' is at revision {revision + 5}" in str(problem["detail"])
    with server.client() as client:
        stored = client.get("/api/v1/profiles/web").json()
    assert stored["max_ttl_seconds"] == WEB["max_ttl_seconds"]
    assert stored["revision"] == revision + 5
    # Read again, write again: accepted.
    assert put_profile(server, "web", {"max_ttl_seconds": 60}).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/profiles"),
        ("GET", "/api/v1/profiles/web"),
        ("PUT", "/api/v1/profiles/web"),
        ("DELETE", "/api/v1/profiles/web"),
    ],
)
def test_profile_api_answers_401_without_the_token(server: Server, method: str, path: str) -> None:
    for token in (None, TOKEN + "x"):
        with server.client(token=token) as client:
            response = client.request(method, path, json={} if method == "PUT" else None)
        assert assert_problem(response, 401)["type"] == "urn:certctl:problem:unauthorized"


# -- a data directory of the schema before profiles -------------------------------------


def test_data_dir_of_the_previous_schema_is_migrated_on_start(
    server: Server, tmp_path: Path
) -> None:
    assert server.put("ca1", localca_body(tmp_path / "state")).status_code == 201
    before = leaf(request_certificate(server, "ca1"))
    server.stop()
    # What the previous release left: no profiles table, schema_version 1.
    with sqlite3.connect(server.data_dir / DB_FILE) as conn:
        conn.execute("DROP TABLE profiles")
        conn.execute("UPDATE meta SET value = '1' WHERE name = 'schema_version'")
    server.start()
    with server.client() as client:
        assert client.get("/api/v1/issuers/ca1").json()["status"]["serving"] is True
        status = client.get(f"/.well-known/pki/ocsp/ca1/{before.serial_number:x}")
        assert status.status_code == 200
    assert put_profile(server, "web", WEB).status_code == 201
    capped = leaf(request_certificate(server, "ca1", profile="web"))
    assert lifetime(capped) <= dt.timedelta(hours=1) + BACKDATE
    server.restart()
    with server.client() as client:
        assert client.get("/api/v1/profiles/web").json()["max_ttl_seconds"] == 3600
    with sqlite3.connect(server.data_dir / DB_FILE) as conn:
        (version,) = conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
    assert version == "2"
    assert "Traceback" not in server.log_text()
