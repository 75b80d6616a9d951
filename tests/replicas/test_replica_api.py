"""The replica view of the API and the settings: the document describes what replicas
answer, and the database URL (with its password) is never shown."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from certctl_core.errors import ConfigError
from certctl_host.server import ServerSettings, load_openapi
from certctl_host.storage import ServerKey
from tests.postgres import PostgresCluster, free_port
from tests.replicas.conftest import Deployment, within
from tests.server.conftest import TOKEN, issue, make_csr

pytestmark = pytest.mark.stepca

_TYPES = {"string": str, "integer": int, "boolean": bool, "null": type(None)}


def _conforms(value: Any, schema: dict[str, Any]) -> None:
    kinds = schema.get("type")
    if kinds is not None:
        allowed = tuple(_TYPES[k] for k in ([kinds] if isinstance(kinds, str) else kinds))
        assert isinstance(value, allowed) and not (
            isinstance(value, bool) and bool not in allowed
        ), (value, schema)


def test_issuer_view_lists_every_replica_as_documented(deployment: Deployment) -> None:
    item = load_openapi()["components"]["schemas"]["Issuer"]["properties"]["replicas"]["items"]
    for replica in deployment.replicas:
        view = deployment.view(replica)
        reports = view["replicas"]
        assert sorted(r["replica"] for r in reports) == ["r0", "r1", "r2"]
        for report in reports:
            assert set(report) == set(item["properties"]) == set(item["required"])
            for name, value in report.items():
                _conforms(value, item["properties"][name])
            assert report["alive"] is True
            assert report["revision"] == view["revision"]
            assert report["error"] is None


def test_database_url_is_a_secret_in_settings(postgres: PostgresCluster) -> None:
    url = postgres.url()
    settings = ServerSettings.from_mapping(
        {"api_tokens": [TOKEN]}, {"CERTCTL_DATABASE_URL": url, "CERTCTL_REPLICA_ID": "east-1"}
    )
    assert settings.database_url is not None and settings.database_url.reveal() == url
    assert settings.replica_id == "east-1"
    assert postgres.password not in repr(settings)
    bad = "mysql://user:" + postgres.password + "@host/db"
    with pytest.raises(ConfigError) as info:
        ServerSettings.from_mapping({"api_tokens": [TOKEN], "database_url": bad}, {})
    assert "database_url" in str(info.value)
    assert postgres.password not in f"{info.value} {info.value!r}"
    default = ServerSettings.from_mapping({"api_tokens": [TOKEN]}, {})
    assert default.database_url is None  # SQLite stays the default


def test_certctl_serve_refuses_an_unreachable_database_without_showing_the_password(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    # A made-up password (the command line is visible to every local user, as `ps` shows).
    fake = "made-up-password-0123"
    url = (
        postgres.url(port=free_port())
        .replace("connect_timeout=5", "connect_timeout=1")
        .replace(postgres.password, fake)
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "CERTCTL_API_TOKENS": TOKEN,
        "CERTCTL_SERVER_KEY": ServerKey.generate_text(),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "certctl_host.cli",
            "serve",
            "--data-dir",
            str(tmp_path / "data"),
            "--port",
            "0",
            "--database-url",
            url,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "database" in output
    assert fake not in output
    assert "Traceback" not in output


def test_a_build_that_fails_on_one_replica_is_shown_as_its_error(
    deployment: Deployment,
) -> None:
    r0, _, r2 = deployment.replicas
    body = deployment.body(deployment.static)
    del body["config"]["root_cert_path"]  # each replica takes it from its environment
    saved = r0.put("envroot", body)
    assert saved.status_code == 201, saved.text
    revision = saved.json()["revision"]

    def reports() -> dict[str, dict[str, Any]]:
        view = deployment.view(issuer="envroot")
        return {r["replica"]: r for r in view["replicas"]}

    within(10, lambda: all(r["revision"] == revision for r in reports().values()))
    shown = reports()
    assert shown["r0"]["error"] is None and shown["r1"]["error"] is None
    assert shown["r2"]["error"] is not None and "root" in shown["r2"]["error"]
    assert shown["r2"]["generation"] is None
    # r2 says so to a client too, and the others issue.
    with r2.client() as client:
        refused = client.post("/api/v1/issuers/envroot/certificates", json={"csr": make_csr()[0]})
    assert refused.status_code == 503, refused.text
    issue(r0, "envroot")
    # Once its cause is gone (the file appears), r2 builds it again by itself: a failed
    # build is retried with backoff, without a new PUT.
    missing = deployment.root / "missing-root.pem"
    missing.write_bytes(deployment.ca.root_file.read_bytes())
    try:
        within(15, lambda: reports()["r2"]["error"] is None)
        assert reports()["r2"]["revision"] == revision
        assert reports()["r2"]["generation"] is not None
        issue(r2, "envroot")
    finally:
        missing.unlink()
