"""The issuer API against the real server process: auth, plugins, issuers, problems."""

from __future__ import annotations

import hmac
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request

from certctl_core import Secret
from certctl_host.server._guard import BearerAuth
from certctl_host.server._problem import Problem
from certctl_host.storage import MASK
from tests.server.conftest import (
    LOCALCA_PASSWORD,
    TOKEN,
    Server,
    issue,
    localca_body,
    make_csr,
)

PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, object] = response.json()
    assert body["status"] == status
    assert isinstance(body["type"], str) and body["type"].startswith("urn:certctl:problem:")
    assert body["detail"]
    assert "Traceback" not in response.text
    return body


API = [
    ("GET", "/api/v1/plugins", None),
    ("GET", "/api/v1/issuers", None),
    ("GET", "/api/v1/issuers/ca1", None),
    ("PUT", "/api/v1/issuers/ca1", {"type": "localca", "config": {}}),
    ("POST", "/api/v1/issuers/ca1/certificates", {"csr": "x"}),
    ("POST", "/api/v1/issuers/ca1/revocations", {"serial": "0x01"}),
]


@pytest.mark.parametrize(("method", "path", "body"), API)
def test_api_answers_401_when_token_is_missing_or_wrong(
    server: Server, method: str, path: str, body: object
) -> None:
    for token in (None, "wrong-token-but-long-enough", TOKEN + "x", TOKEN[:-1]):
        with server.client(token=token) as client:
            response = client.request(method, path, json=body)
        problem = assert_problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert TOKEN not in response.text
        assert problem["type"] == "urn:certctl:problem:unauthorized"
    with server.client(token=None, headers={"Authorization": f"Basic {TOKEN}"}) as client:
        assert_problem(client.get("/api/v1/issuers"), 401)


def _request(token: str | None) -> Request:
    headers = [] if token is None else [(b"authorization", f"Bearer {token}".encode())]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers})


def test_every_token_is_compared_in_constant_time_when_checking(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    tokens = [Secret("first-token-0123456789"), Secret("second-token-0123456789")]
    auth = BearerAuth(tokens)
    auth.check(_request("first-token-0123456789"))
    # No early exit on a match: both tokens were compared, as fixed-size digests.
    assert len(calls) == 2
    assert all(len(a) == len(b) == 32 for a, b in calls)
    calls.clear()
    with pytest.raises(Problem):
        auth.check(_request("x"))
    assert len(calls) == 2
    assert "first-token" not in repr(auth)


def test_plugins_lists_types_capabilities_and_blocked(tmp_path: Path) -> None:
    server = Server(tmp_path)
    server.env["CERTCTL_DISABLE_PLUGINS"] = "example"
    server.start()
    try:
        with server.client() as client:
            body = client.get("/api/v1/plugins").json()
    finally:
        server.stop()
    types = {t["name"]: t for t in body["connector_types"]}
    assert set(types) >= {"localca", "stepca"}
    assert "example" not in types
    assert body["blocked"] == ["example"]
    assert types["localca"]["capabilities"] == ["crl", "ocsp", "status"]
    assert types["stepca"]["secret_fields"] == ["provisioner_password"]
    assert types["localca"]["distribution"] == "certctl-connectors"
    assert body["failures"] == []


def test_put_creates_then_replaces_and_masks_secrets(server: Server, tmp_path: Path) -> None:
    created = server.put("ca1", localca_body(tmp_path / "state"))
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["config"]["key_password"] == MASK
    assert body["status"]["serving"] is True
    assert body["status"]["ocsp"] == "connector"
    assert LOCALCA_PASSWORD not in created.text
    # Replace, keeping the stored password through the placeholder.
    again = localca_body(tmp_path / "state", validity_days=7)
    again["config"]["key_password"] = MASK
    replaced = server.put("ca1", again)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["revision"] > body["revision"]
    assert replaced.json()["status"]["generation"] > body["status"]["generation"]
    issued = issue(server, "ca1")
    with server.client() as client:
        listed = client.get("/api/v1/issuers").json()["issuers"]
        one = client.get("/api/v1/issuers/ca1").json()
    assert [i["id"] for i in listed] == ["ca1"]
    assert one["config"] == {
        "state_dir": str(tmp_path / "state"),
        "key_password": MASK,
        "validity_days": 7,
    }
    assert issued["serial"]
    assert LOCALCA_PASSWORD not in server.log_text()


def test_put_answers_422_listing_every_field_when_invalid(server: Server) -> None:
    response = server.put(
        "ca1", {"type": "localca", "config": {"validity_days": -1, "bogus": 1}, "extra": 1}
    )
    problem = assert_problem(response, 422)
    fields = {e["field"] for e in problem["errors"]}  # type: ignore[attr-defined]
    # One document: the unknown top-level field and every config problem (issue 15).
    assert fields == {
        "extra",
        "config.validity_days",
        "config.bogus",
        "config.state_dir",
        "config.key_password",
    }
    response = server.put("ca1", {"type": "localca", "config": {"validity_days": -1, "bogus": 1}})
    problem = assert_problem(response, 422)
    fields = {e["field"] for e in problem["errors"]}  # type: ignore[attr-defined]
    assert fields == {
        "config.validity_days",
        "config.bogus",
        "config.state_dir",
        "config.key_password",
    }
    response = server.put("bad id!", {"type": "nope", "config": []})
    fields = {e["field"] for e in assert_problem(response, 422)["errors"]}  # type: ignore[attr-defined]
    assert fields == {"id", "type", "config"}
    with server.client() as client:
        assert client.get("/api/v1/issuers").json() == {"issuers": []}


def test_placeholder_without_stored_secret_is_refused(server: Server, tmp_path: Path) -> None:
    body = localca_body(tmp_path / "state")
    body["config"]["key_password"] = MASK
    problem = assert_problem(server.put("ca1", body), 422)
    assert problem["errors"] == [
        {
            "field": "config.key_password",
            "message": f"the placeholder {MASK} keeps a stored secret, but none is stored",
            "hint": "give the secret itself",
        }
    ]


def test_failed_put_keeps_old_connector_and_stored_config(server: Server, tmp_path: Path) -> None:
    assert server.put("ca1", localca_body(tmp_path / "state")).status_code == 201
    with server.client() as client:
        before = client.get("/api/v1/issuers/ca1").json()
    # The same state directory with a wrong key password: the new connector cannot be built.
    wrong = localca_body(tmp_path / "state")
    wrong["config"]["key_password"] = "not the password of these keys"
    problem = assert_problem(server.put("ca1", wrong), 422)
    assert "not the password" not in str(problem)
    with server.client() as client:
        after = client.get("/api/v1/issuers/ca1").json()
    assert after == before
    issue(server, "ca1")  # the old connector still serves


def test_issue_and_revoke_record_in_ledger(server: Server, tmp_path: Path) -> None:
    server.put("ca1", localca_body(tmp_path / "state"))
    issued = issue(server, "ca1", "www.example.test")
    assert issued["certificate"].startswith("-----BEGIN CERTIFICATE-----")
    assert issued["chain"].count("BEGIN CERTIFICATE") == 2
    with server.client() as client:
        url = "/api/v1/issuers/ca1/revocations"
        first = client.post(
            url, json={"serial": "0x" + issued["serial"], "reason": "keyCompromise"}
        )
        second = client.post(url, json={"serial": issued["serial_decimal"], "reason": 4})
    assert first.status_code == 201, first.text
    assert first.json()["already_revoked"] is False
    assert first.json()["reason"] == "keyCompromise"
    assert second.status_code == 200
    assert second.json()["already_revoked"] is True
    assert second.json()["reason"] == "keyCompromise"


@pytest.mark.parametrize(
    ("body", "status", "slug"),
    [
        ({"csr": "not a csr"}, 422, "invalid-request"),
        ({}, 422, "invalid-request"),
        ({"csr": make_csr()[0], "validity_seconds": -5}, 422, "invalid-request"),
        ({"csr": make_csr()[0], "profile": 7}, 422, "invalid-request"),
    ],
)
def test_issue_answers_problem_when_request_is_bad(
    server: Server, tmp_path: Path, body: dict[str, object], status: int, slug: str
) -> None:
    server.put("ca1", localca_body(tmp_path / "state"))
    with server.client() as client:
        response = client.post("/api/v1/issuers/ca1/certificates", json=body)
    assert assert_problem(response, status)["type"] == f"urn:certctl:problem:{slug}"


def test_http_errors_are_problem_documents(server: Server, tmp_path: Path) -> None:
    server.put("ca1", localca_body(tmp_path / "state"))
    with server.client() as client:
        assert_problem(client.get("/nowhere"), 404)
        assert_problem(client.get("/api/v1/issuers/missing"), 404)
        assert_problem(client.delete("/api/v1/issuers/ca1"), 405)
        assert_problem(
            client.post("/api/v1/issuers/missing/certificates", json={"csr": make_csr()[0]}), 404
        )
        assert_problem(
            client.post(
                "/api/v1/issuers/ca1/revocations",
                content=b"serial=1",
                headers={"content-type": "application/x-www-form-urlencoded"},
            ),
            415,
        )
        assert_problem(
            client.put(
                "/api/v1/issuers/ca1",
                content=b"{not json",
                headers={"content-type": "application/json"},
            ),
            400,
        )
        big = b'{"csr": "' + b"A" * (2 << 20) + b'"}'
        assert_problem(
            client.post(
                "/api/v1/issuers/ca1/certificates",
                content=big,
                headers={"content-type": "application/json"},
            ),
            413,
        )
        assert_problem(client.post("/api/v1/issuers/ca1/revocations", json={"serial": "0xff"}), 422)


def test_put_that_moves_a_local_ca_to_another_state_dir_is_refused_unless_asked(
    server: Server, tmp_path: Path
) -> None:
    assert server.put("ca1", localca_body(tmp_path / "A")).status_code == 201
    issued = issue(server, "ca1")

    moved = server.put("ca1", localca_body(tmp_path / "B"))  # the password is sent again
    problem = assert_problem(moved, 422)
    errors: list[dict[str, str]] = problem["errors"]  # type: ignore[assignment]
    assert [e["field"] for e in errors] == ["config.state_dir"]
    assert "replace_ca" in errors[0]["hint"]
    # Nothing changed: the old CA still serves and can still revoke what it issued.
    with server.client() as client:
        assert client.get("/api/v1/issuers/ca1").json()["config"]["state_dir"] == str(
            tmp_path / "A"
        )
        revoked = client.post(
            "/api/v1/issuers/ca1/revocations",
            json={"serial": "0x" + issued["serial"], "reason": "superseded"},
        )
    assert revoked.status_code == 201, revoked.text

    replaced = server.put("ca1", localca_body(tmp_path / "B") | {"replace_ca": True})
    assert replaced.status_code == 200, replaced.text
    assert assert_problem(server.put("ca1", localca_body(tmp_path / "A") | {"replace_ca": 1}), 422)
