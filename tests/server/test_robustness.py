"""Server robustness (issue 15): a FIFO for a password file, reads behind a foreign write
lock, issuer ids with a trailing newline, query strings in the access log, and a deleted
``server.lock``. Each test runs the real server (``python -m certctl_host.server``)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from certctl_host.storage import IssuerRecord, SQLiteStore
from tests.server.conftest import TOKEN, Server, localca_body, make_csr

#: A behaviour bound, not a benchmark: an answer that does not come in this long means the
#: request waited for something it must not wait for (a FIFO, another process's lock).
BOUND = 2.0


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "password.fifo"
    os.mkfifo(path)
    yield path
    # Should anything still wait on it (the behaviour under test failing), let it go.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return
    os.close(fd)


@pytest.fixture
def local_server(tmp_path: Path) -> Iterator[Server]:
    """A server with one Local CA issuer, "local", and no practical rate limit."""
    running = Server(tmp_path, rate_limit_per_second=1e6, rate_limit_burst=10**7)
    running.start()
    try:
        assert running.put("local", localca_body(tmp_path / "local")).status_code == 201
        yield running
    finally:
        running.stop()


def stepca_body_with(password_file: Path, tmp_path: Path) -> dict[str, Any]:
    """A step-ca config that fails (if at all) on its settings alone: no CA is contacted
    before the password file is read."""
    key = tmp_path / "provisioner.json"
    key.write_text("{}")
    return {
        "type": "stepca",
        "config": {
            "ca_url": "https://127.0.0.1:9",
            "provisioner_name": "certctl",
            "provisioner_key_path": str(key),
            "provisioner_password_file": str(password_file),
            "root_fingerprint": "ab" * 32,
        },
    }


def client(server: Server, *, token: str | None = TOKEN, timeout: float = BOUND) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=timeout, trust_env=False)


def assert_answering(server: Server) -> None:
    """Authenticated and unauthenticated endpoints answer within BOUND."""
    with client(server) as http:
        assert http.get("/api/v1/issuers").status_code == 200
        assert http.get("/api/v1/issuers/local").status_code == 200
    with client(server, token=None) as http:
        assert http.get("/healthz").status_code in (200, 503)
        assert http.get("/.well-known/pki/crl/local").status_code == 200
        assert http.get("/.well-known/pki/ocsp/local/1f2e").status_code == 200


# -- 1. a password file that blocks on read -------------------------------------------------


@pytest.mark.parametrize("connector", ["stepca", "localca"])
def test_a_fifo_password_file_is_a_422_while_the_server_keeps_answering(
    local_server: Server, fifo: Path, tmp_path: Path, connector: str
) -> None:
    if connector == "stepca":
        body, field = stepca_body_with(fifo, tmp_path), "config.provisioner_password_file"
    else:
        body = {"type": "localca", "config": {"state_dir": str(tmp_path / "other")}}
        body["config"]["key_password_file"] = str(fifo)
        field = "config.key_password_file"
    answer: list[httpx.Response | BaseException] = []

    def put() -> None:
        try:
            with client(local_server, timeout=10) as http:
                answer.append(http.put("/api/v1/issuers/piped", json=body))
        except BaseException as exc:
            answer.append(exc)

    putter = threading.Thread(target=put, daemon=True)
    putter.start()
    time.sleep(0.2)  # the PUT is in (or done): everything else must still be answered
    assert_answering(local_server)
    putter.join(BOUND * 2)
    assert answer, "the PUT naming a FIFO got no answer"
    response = answer[0]
    assert isinstance(response, httpx.Response), response
    assert response.status_code == 422, response.text
    problems = {p["field"]: p["message"] for p in response.json()["errors"]}
    assert "not a regular file" in problems[field]
    assert_answering(local_server)


def test_a_stored_config_naming_a_fifo_does_not_hang_the_start(tmp_path: Path, fifo: Path) -> None:
    server = Server(tmp_path)
    record = IssuerRecord(
        "piped",
        "localca",
        {"state_dir": str(tmp_path / "piped"), "key_password_file": str(fifo)},
    )

    async def store_it() -> None:
        store = await SQLiteStore.open(server.data_dir, env={})
        try:
            await store.put_issuer(record)
        finally:
            await store.aclose()

    asyncio.run(store_it())
    started = time.monotonic()
    server.start()
    try:
        assert time.monotonic() - started < 30
        with client(server) as http:
            view = http.get("/api/v1/issuers/piped").json()
        assert view["status"]["serving"] is False, view
        assert "not a regular file" in view["status"]["error"]
    finally:
        server.stop()


# -- 2. reads do not queue behind writes ---------------------------------------------------


HOLD_WRITE_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def hold_write_lock(database: Path, seconds: float) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_WRITE_LOCK, str(database), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_reads_answer_while_writes_wait_for_another_process_holding_the_write_lock(
    local_server: Server,
) -> None:
    csrs = [make_csr(f"w{i}.example.test")[0] for i in range(8)]
    holder = hold_write_lock(local_server.data_dir / "certctl.sqlite3", 60)
    try:

        async def scenario() -> None:
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with httpx.AsyncClient(
                base_url=local_server.url, headers=headers, timeout=60, trust_env=False
            ) as client:
                # Each issue ends with a store write, which now waits for the lock.
                writes = [
                    asyncio.create_task(
                        client.post("/api/v1/issuers/local/certificates", json={"csr": csr})
                    )
                    for csr in csrs
                ]
                await asyncio.sleep(1.0)
                assert not any(w.done() for w in writes), "the writes did not queue"
                got = await asyncio.wait_for(client.get("/api/v1/issuers/local"), BOUND)
                assert got.status_code == 200
                listed = await asyncio.wait_for(client.get("/api/v1/issuers"), BOUND)
                assert listed.status_code == 200
                ocsp = await asyncio.wait_for(client.get("/.well-known/pki/ocsp/local/1f2e"), BOUND)
                assert ocsp.status_code == 200
                holder.kill()  # let the writes through
                for done in await asyncio.gather(*writes):
                    assert done.status_code in (201, 503), done.text

        asyncio.run(scenario())
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


# -- 3. issuer ids: no trailing newline ----------------------------------------------------


def test_an_issuer_id_with_a_trailing_newline_is_refused(local_server: Server) -> None:
    body = localca_body(local_server.directory / "corp")
    response = local_server.put("corp%0A", body)
    assert 400 <= response.status_code < 500, response.text
    with local_server.client() as client:
        ids = [issuer["id"] for issuer in client.get("/api/v1/issuers").json()["issuers"]]
        assert ids == ["local"]
        assert client.get("/api/v1/issuers/local%0A").status_code == 404
        ocsp = client.get("/.well-known/pki/ocsp/local%0A/1f2e")
        assert ocsp.status_code in (200, 404)
        if ocsp.status_code == 200:
            assert ocsp.content == bytes.fromhex("30030a0106")  # unauthorized


# -- 4. no query strings in the access log --------------------------------------------------


def test_query_strings_are_not_written_to_the_access_log(local_server: Server) -> None:
    secret = "SECRET-query-token-0123456789"
    with local_server.client() as client:
        assert client.get(f"/api/v1/issuers?token={secret}").status_code == 200
        client.get(f"/api/v1/issuers/local?token={secret}&x=1")
    with local_server.client(token=None) as client:
        client.get(f"/.well-known/pki/crl/local?access_token={secret}")
    deadline = time.monotonic() + 5
    while "crl/local" not in local_server.access_log() and time.monotonic() < deadline:
        time.sleep(0.05)
    access = local_server.access_log()
    assert "/api/v1/issuers?[redacted]" in access
    assert "/.well-known/pki/crl/local?[redacted]" in access
    local_server.stop()
    assert secret not in access
    assert secret not in local_server.log_text()
    assert secret not in local_server.access_log()


# -- 5. one server per data directory, lock file or not -------------------------------------


def test_deleting_server_lock_does_not_let_a_second_server_use_the_data_dir(
    server: Server,
) -> None:
    (server.data_dir / "server.lock").unlink()
    second = subprocess.run(
        [sys.executable, "-m", "certctl_host.server", str(server.settings_file)],
        capture_output=True,
        text=True,
        timeout=60,
        env=server.env,
        check=False,
    )
    assert second.returncode == 2, second.stdout + second.stderr
    assert "is in use by another certctl server" in second.stderr
    assert "listening on" not in second.stdout
    with client(server) as http:
        assert http.get("/api/v1/issuers").status_code == 200


def test_the_lock_file_names_the_owner_and_the_data_dir_is_free_after_a_stop(
    server: Server,
) -> None:
    assert server.process is not None
    assert (server.data_dir / "server.lock").read_text().strip() == str(server.process.pid)
    server.stop()
    server.start()  # the kernel released the lock with the first process
