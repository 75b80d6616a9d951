"""The store and the live connectors never disagree: a PUT whose store write fails leaves
the old connector serving untouched, concurrent writers get 409, one undecodable issuer
does not stop the others, and one data directory has one server."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from cryptography import x509

from certctl_host.storage import DB_FILE
from tests.server.conftest import LOCALCA_PASSWORD, Server, issue, localca_body, make_csr

#: Guards a wait for the server; never part of an assertion.
GUARD = 60.0


@contextmanager
def write_locked(server: Server) -> Iterator[sqlite3.Connection]:
    """Hold the store's SQLite write lock, as another writer would."""
    conn = sqlite3.connect(server.data_dir / DB_FILE, isolation_level=None, timeout=30)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")
        conn.close()


def wait_for_log(server: Server, text: str) -> None:
    deadline = time.monotonic() + GUARD
    while text not in server.log_text():
        assert time.monotonic() < deadline, f"the server never logged {text!r}"
        time.sleep(0.05)


class BackgroundPut(threading.Thread):
    """A PUT sent from another thread (it blocks while the store is locked)."""

    def __init__(self, server: Server, issuer_id: str, body: dict[str, object]) -> None:
        super().__init__(daemon=True)
        self.args_ = (server, issuer_id, body)
        self.answer: httpx.Response | None = None
        self.start()

    def run(self) -> None:
        server, issuer_id, body = self.args_
        self.answer = server.put(issuer_id, body)

    def result(self) -> httpx.Response:
        self.join(GUARD)
        assert self.answer is not None, "the PUT never answered"
        return self.answer


def ca_key_id(server: Server, issuer_id: str, name: str = "svc.example.test") -> bytes:
    """Which CA signs for the issuer now: the key id of the certificate's issuer."""
    leaf = x509.load_pem_x509_certificate(issue(server, issuer_id, name)["certificate"].encode())
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier is not None
    return aki.key_identifier


def crl_key_id(server: Server, issuer_id: str) -> bytes:
    """Which CA signs the issuer's CRL now (a read: works while the store is locked)."""
    response = httpx.get(f"{server.url}/.well-known/pki/crl/{issuer_id}", trust_env=False)
    assert response.status_code == 200, response.text
    crl = x509.load_der_x509_crl(response.content)
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier is not None
    return aki.key_identifier


BUILT = "issuer ca1: new connector built, not serving yet; writing the store"


def test_failed_store_write_leaves_the_old_connector_serving_untouched(
    server: Server, tmp_path: Path
) -> None:
    password_file = tmp_path / "pw"
    password_file.write_text(LOCALCA_PASSWORD)
    first = {
        "type": "localca",
        "config": {"state_dir": str(tmp_path / "A"), "key_password_file": str(password_file)},
    }
    assert server.put("ca1", first).status_code == 201
    ca_a = ca_key_id(server, "ca1")
    # The old config can no longer be built again: restoring it after a failure would fail.
    password_file.unlink()

    with write_locked(server):
        pending = BackgroundPut(server, "ca1", localca_body(tmp_path / "B") | {"replace_ca": True})
        answer = pending.result()  # the store stays locked past its busy timeout
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"] == "application/problem+json"

    with server.client() as client:
        view = client.get("/api/v1/issuers/ca1").json()
    assert view["config"]["state_dir"] == str(tmp_path / "A")
    assert view["status"]["serving"] is True
    assert ca_key_id(server, "ca1", "after.example.test") == ca_a
    assert crl_key_id(server, "ca1") == ca_a


def test_connector_built_for_a_put_does_not_serve_before_the_store_write(
    server: Server, tmp_path: Path
) -> None:
    assert server.put("ca1", localca_body(tmp_path / "A")).status_code == 201
    ca_a = crl_key_id(server, "ca1")
    with write_locked(server) as other:
        pending = BackgroundPut(server, "ca1", localca_body(tmp_path / "B") | {"replace_ca": True})
        wait_for_log(server, BUILT)
        # Built, waiting for the store: CA A still answers (a read; issuing would write).
        assert crl_key_id(server, "ca1") == ca_a
        other.execute("COMMIT")  # the store is free again: the PUT completes
        assert pending.result().status_code == 200
    assert crl_key_id(server, "ca1") != ca_a
    assert ca_key_id(server, "ca1") != ca_a


def test_concurrent_writer_gets_409_and_nothing_changes(server: Server, tmp_path: Path) -> None:
    created = server.put("ca1", localca_body(tmp_path / "A"))
    assert created.status_code == 201
    ca_a = ca_key_id(server, "ca1")
    revision = created.json()["revision"]
    replacement = localca_body(tmp_path / "B") | {"replace_ca": True}
    # A new state_dir is what the key password unlocks: the secret is sent again (a
    # placeholder would be refused, ADR 0022).

    with write_locked(server) as other:
        pending = BackgroundPut(server, "ca1", replacement)
        wait_for_log(server, BUILT + f" (expected revision {revision})")
        # Another writer changes the issuer meanwhile (a replica, a second admin).
        other.execute("UPDATE issuers SET revision = ? WHERE issuer_id = 'ca1'", (revision + 1,))
        other.execute(
            "INSERT OR REPLACE INTO meta VALUES ('config_revision', ?)", (str(revision + 1),)
        )
    answer = pending.result()
    assert answer.status_code == 409, answer.text
    problem = answer.json()
    assert problem["type"] == "urn:certctl:problem:conflict"
    assert f"revision {revision + 1}" in problem["detail"]
    assert LOCALCA_PASSWORD not in answer.text

    with server.client() as client:
        view = client.get("/api/v1/issuers/ca1").json()
    assert view["config"]["state_dir"] == str(tmp_path / "A")
    assert view["revision"] == revision + 1
    assert ca_key_id(server, "ca1") == ca_a
    # Read again, write again: accepted.
    assert server.put("ca1", replacement).status_code == 200
    assert ca_key_id(server, "ca1") != ca_a


def test_issuer_whose_secret_does_not_decrypt_is_reported_and_others_serve(
    server: Server, tmp_path: Path
) -> None:
    assert server.put("good", localca_body(tmp_path / "good")).status_code == 201
    assert server.put("bad", localca_body(tmp_path / "bad")).status_code == 201
    server.stop()
    with sqlite3.connect(server.data_dir / DB_FILE) as conn:
        (config,) = conn.execute("SELECT config FROM issuers WHERE issuer_id = 'good'").fetchone()
        # The sealed password of "good" is bound to "good": under "bad" it does not decrypt.
        sealed = json.loads(config)["key_password"]
        (bad_config,) = conn.execute(
            "SELECT config FROM issuers WHERE issuer_id = 'bad'"
        ).fetchone()
        tampered = {**json.loads(bad_config), "key_password": sealed}
        conn.execute(
            "UPDATE issuers SET config = ? WHERE issuer_id = 'bad'", (json.dumps(tampered),)
        )
    server.start()

    with server.client() as client:
        listed = client.get("/api/v1/issuers")
        one = client.get("/api/v1/issuers/bad")
    assert listed.status_code == 200, listed.text
    views = {v["id"]: v for v in listed.json()["issuers"]}
    assert views["good"]["status"]["serving"] is True
    assert views["bad"]["status"]["serving"] is False
    assert "does not decrypt" in views["bad"]["status"]["error"]
    assert one.status_code == 200 and one.json()["status"]["serving"] is False
    issue(server, "good")
    csr = {"csr": make_csr()[0]}
    with server.client() as client:
        refused = client.post("/api/v1/issuers/bad/certificates", json=csr)
    assert refused.status_code == 503
    # A placeholder cannot keep a secret that does not decrypt; the secret itself can.
    masked = localca_body(tmp_path / "bad")
    masked["config"]["key_password"] = "********"
    assert server.put("bad", masked).status_code == 422
    assert server.put("bad", localca_body(tmp_path / "bad")).status_code == 200
    issue(server, "bad")
    assert "Traceback" not in server.log_text()
    assert LOCALCA_PASSWORD not in server.log_text()


def test_second_server_on_the_same_data_dir_exits_2(server: Server, tmp_path: Path) -> None:
    second = tmp_path / "second.json"
    second.write_text(json.dumps(server.settings))
    result = subprocess.run(
        [sys.executable, "-m", "certctl_host.server", str(second)],
        capture_output=True,
        text=True,
        env=server.env,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert server.process is not None
    assert f"in use by another certctl server (pid {server.process.pid})" in result.stderr
    assert "Traceback" not in result.stderr
    # The first one is untouched, and the lock goes with it.
    assert server.put("ca1", localca_body(tmp_path / "A")).status_code == 201
    server.stop()
    server.start()
    issue(server, "ca1")
