"""The generic host drives the ACME connector: ``certctl issue --type acme`` and
``PUT /api/v1/issuers/{id}`` with type ``acme`` (nothing in the host names it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509

from certctl_acme._jose import generate_account_key
from tests.acme.conftest import PebbleEnv
from tests.cli.conftest import certctl, clean_env
from tests.server.conftest import Server, make_csr

pytestmark = pytest.mark.acme


def test_certctl_issue_type_acme_against_pebble(pebble: PebbleEnv, tmp_path: Path) -> None:
    config = tmp_path / "acme.json"
    config.write_text(json.dumps(pebble.config(account_key=generate_account_key().pem())))
    run = certctl(
        "issue",
        "--type",
        "acme",
        "--config",
        config,
        "--cn",
        "cli.example.test",
        "--san",
        "cli.example.test",
        "--key-out",
        tmp_path / "cli.key",
        "--out",
        tmp_path / "cli.pem",
        env=clean_env(),
    )
    assert run.code == 0, run
    cert = x509.load_pem_x509_certificates((tmp_path / "cli.pem").read_bytes())[0]
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["cli.example.test"]
    listed = certctl("plugins", env=clean_env())
    assert "acme" in listed.stdout


def test_put_issuer_type_acme_seals_the_account_key_and_issues(
    pebble: PebbleEnv, tmp_path: Path
) -> None:
    key = generate_account_key().pem()
    secret_line = key.splitlines()[1]
    server = Server(tmp_path)
    server.start()
    try:
        body = {"type": "acme", "config": pebble.config(account_key=key)}
        put = server.put("pebble", body)
        assert put.status_code in (200, 201), put.text
        assert secret_line not in put.text
        csr, _ = make_csr("server.example.test")
        with server.client() as client:
            shown = client.get("/api/v1/issuers/pebble")
            issued = client.post("/api/v1/issuers/pebble/certificates", json={"csr": csr})
        assert shown.status_code == 200 and secret_line not in shown.text
        assert issued.status_code == 201, issued.text
        # Sealed at rest: the key is nowhere in the data directory in clear.
        for path in server.data_dir.rglob("*"):
            if path.is_file():
                assert secret_line.encode() not in path.read_bytes(), path
        assert secret_line not in server.log_text()
        # A config the connector refuses (an unknown key) is a client error, not a 500.
        refused = server.put("pebble", {"type": "acme", "config": {**pebble.config(), "bogus": 1}})
        assert refused.status_code in (400, 422), refused.text
        assert "bogus" in refused.text
    finally:
        server.stop()
