"""Three ``certctl`` server replicas on one real PostgreSQL, in front of one real step-ca.

The third replica reaches PostgreSQL through a TCP proxy the tests control (a network cut);
the others connect directly. Every replica has its own data directory and the same server
key (``CERTCTL_SERVER_KEY``), as a deployment would."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from certctl_host.storage import KEY_ENV, ServerKey
from certctl_stepca.testing import (
    OCSP_RESPONDER_TEMPLATE,
    ProvisionerKey,
    StepCA,
    make_provisioner_key,
    provisioner_entry,
)
from tests.postgres import PostgresCluster
from tests.replicas.proxy import Proxy
from tests.server.conftest import CLAIMS, RESPONDER_PROVISIONER, Server, make_csr

PASSWORD = "replica provisioner password 0123"
ISSUER = "shared"
POLL = 0.5  # config_poll_seconds: the periodic revision check
STALENESS = 2.0  # replica_staleness_seconds: the bound a cut replica stops issuing within


class Deployment:
    """The replicas, the database, the CA and the proxy, with the operator's moves."""

    def __init__(self, root: Path, postgres: PostgresCluster) -> None:
        self.root = root
        self.postgres = postgres
        self.url = postgres.new_database()
        self.key_text = ServerKey.generate_text()
        self.keys: list[ProvisionerKey] = [make_provisioner_key("rot-0", PASSWORD)]
        # Not rotated: an issuer with a delegated OCSP responder for the ledger tests.
        self.static = make_provisioner_key("static", PASSWORD)
        responder = provisioner_entry(
            self.static, claims=CLAIMS, x509_template=OCSP_RESPONDER_TEMPLATE
        )
        responder["name"] = RESPONDER_PROVISIONER
        self.fixed = [provisioner_entry(self.static, claims=CLAIMS), responder]
        self.ca = StepCA.create(
            root / "ca",
            provisioners=[provisioner_entry(self.keys[0], claims=CLAIMS), *self.fixed],
        )
        self.proxy = Proxy(postgres.port)
        self.replicas: list[Server] = []
        try:  # a start-up that fails part way stops what it started
            self.ca.start()
            self.replicas = [self._replica(i) for i in range(3)]
            for replica in self.replicas:
                replica.start()
        except BaseException:
            self.stop()
            raise

    def _replica(self, index: int) -> Server:
        directory = self.root / f"replica-{index}"
        directory.mkdir()
        url = (
            self.url
            if index < 2
            else self.url.replace(f":{self.postgres.port}/", f":{self.proxy.port}/")
        )
        server = Server(
            directory,
            database_url=url,
            replica_id=f"r{index}",
            config_poll_seconds=POLL,
            replica_staleness_seconds=STALENESS,
            drain_timeout_seconds=5,
            log_level="info",
            rate_limit_per_second=1e5,
            rate_limit_burst=10**6,
        )
        server.env[KEY_ENV] = self.key_text
        # A config without root_cert_path takes the root from the environment: r2's names
        # a missing file, so such a config builds on r0 and r1 and fails on r2 only.
        server.env["CERTCTL_STEPCA_ROOT"] = str(
            self.ca.root_file if index < 2 else self.root / "missing-root.pem"
        )
        return server

    # -- the issuer --------------------------------------------------------------------

    def body(self, key: ProvisionerKey, *, responder: bool = False) -> dict[str, Any]:
        key_file = key.write_key_file(self.root / f"{key.name}.json")
        extra: dict[str, Any] = {}
        if responder:
            extra["ocsp_responder"] = {"config": {"provisioner_name": RESPONDER_PROVISIONER}}
        return {
            **extra,
            "type": "stepca",
            "config": {
                "ca_url": self.ca.url,
                "provisioner_name": key.name,
                "provisioner_key_path": str(key_file),
                "provisioner_password": PASSWORD,
                "root_cert_path": str(self.ca.root_file),
                "max_retries": 3,
                "timeout_seconds": 10,
            },
        }

    def view(self, replica: Server | None = None, issuer: str = ISSUER) -> dict[str, Any]:
        with (replica or self.replicas[0]).client() as client:
            response = client.get(f"/api/v1/issuers/{issuer}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def wait_all_serving(self, revision: int, timeout: float = 20.0, issuer: str = ISSUER) -> float:
        """Until every alive replica reports ``revision``; returns the seconds waited."""
        start = time.monotonic()
        while True:
            reports = self.view(issuer=issuer).get("replicas", [])
            alive = [r for r in reports if r["alive"]]
            if len(alive) == len(self.replicas) and all(
                r["revision"] == revision and r["error"] is None for r in alive
            ):
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise AssertionError(f"replicas never all served revision {revision}: {reports}")
            time.sleep(0.01)

    def rotate(self, rng: random.Random) -> float:
        """One provisioner rotation, as an operator does it; returns PUT-to-all-serving
        seconds. step-ca already lists the new provisioner (added with the previous
        removal: one reload per rotation)."""
        new = self.keys[-1]
        target = rng.choice(self.replicas)
        started = time.monotonic()
        response = target.put(ISSUER, self.body(new))
        assert response.status_code == 200, response.text
        self.wait_all_serving(response.json()["revision"])
        took = time.monotonic() - started
        self.finish_rotation()
        return took

    def finish_rotation(self) -> None:
        """Every replica serves the newest key: the old provisioner goes, the next one
        comes (one step-ca reload)."""
        new = self.keys[-1]
        following = make_provisioner_key(f"rot-{len(self.keys)}", PASSWORD)
        self.keys.append(following)
        self.ca.set_provisioners(
            [
                provisioner_entry(new, claims=CLAIMS),
                provisioner_entry(following, claims=CLAIMS),
                *self.fixed,
            ]
        )
        self.ca.reload()

    def stop(self) -> None:
        """Stop everything, also what a failed start-up left half started."""
        try:
            for replica in self.replicas:
                replica.stop()
        finally:
            self.proxy.close()
            self.ca.stop()


class Clients:
    """``count`` client threads issuing without pause, each request to the next replica."""

    def __init__(self, deployment: Deployment, count: int = 8) -> None:
        self.deployment = deployment
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.serials: list[str] = []
        self.failures: list[str] = []
        #: (replica index, monotonic time answered, HTTP status or 0 for no answer, seconds)
        self.outcomes: list[tuple[int, float, int, float]] = []
        self.csrs = [make_csr(f"c{i}.replicas.test")[0] for i in range(count)]
        self.threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(count)
        ]
        self.issued = threading.Condition(self.lock)

    def _run(self, index: int) -> None:
        replicas = self.deployment.replicas
        clients = [r.client() for r in replicas]
        turn = index
        try:
            while not self.stop.is_set():
                which = turn % len(clients)
                client = clients[which]
                turn += 1
                started = time.monotonic()
                code = 0
                try:
                    response = client.post(
                        f"/api/v1/issuers/{ISSUER}/certificates",
                        json={"csr": self.csrs[index]},
                    )
                except httpx.HTTPError as exc:
                    outcome, serial = f"{type(exc).__name__}: {exc}", None
                else:
                    code = response.status_code
                    if response.status_code == 201:
                        outcome, serial = "", response.json()["serial"]
                    else:
                        outcome, serial = f"{response.status_code} {response.text[:300]}", None
                with self.lock:
                    now = time.monotonic()
                    self.outcomes.append((which, now, code, now - started))
                    if serial is not None:
                        self.serials.append(serial)
                        self.issued.notify_all()
                    else:
                        self.failures.append(f"r{which}: {outcome}")
        finally:
            for client in clients:
                client.close()

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def wait_for(self, more: int, timeout: float = 30.0) -> None:
        """Until ``more`` further certificates were issued."""
        with self.lock:
            target = len(self.serials) + more
            assert self.issued.wait_for(lambda: len(self.serials) >= target, timeout)

    def wait_issued_by(self, replica: int, more: int, timeout: float = 30.0) -> None:
        """Until replica ``replica`` answered ``more`` further issuances with 201."""

        def count() -> int:
            return sum(1 for r, _, code, _ in self.outcomes if r == replica and code == 201)

        with self.lock:
            target = count() + more
            assert self.issued.wait_for(lambda: count() >= target, timeout), self.failures[-3:]

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


@pytest.fixture(scope="package")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, postgres: PostgresCluster
) -> Iterator[Deployment]:
    running = Deployment(tmp_path_factory.mktemp("replicas"), postgres)
    try:
        first = running.replicas[0].put(ISSUER, running.body(running.keys[0]))
        assert first.status_code == 201, first.text
        running.wait_all_serving(first.json()["revision"])
        following = make_provisioner_key("rot-1", PASSWORD)
        running.keys.append(following)
        running.ca.add_provisioner(provisioner_entry(following, claims=CLAIMS))
        yield running
    finally:
        running.stop()
        for replica in running.replicas:
            text = replica.log_text() + replica.access_log()
            assert "Traceback" not in text, text[-3000:]
            # The database password (in the URL every replica was given) never shows.
            assert postgres.password not in text


def within(seconds: float, check: Callable[[], bool], step: float = 0.02) -> float:
    """Poll ``check`` until true; returns the seconds it took (fails after ``seconds``)."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > seconds:
            raise AssertionError(f"not within {seconds} s")
        time.sleep(step)
    return time.monotonic() - start
