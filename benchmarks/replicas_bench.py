"""Several replicas on one PostgreSQL: ``python -m benchmarks.replicas_bench [--seconds N]``.

Starts a PostgreSQL cluster, a real step-ca and three ``certctl`` server replicas (the
test deployment of ``tests/replicas``), then measures in one run:

* PostgreSQL round trips per API issuance and per OCSP answer, from PostgreSQL's own
  transaction counter (every store call is one autocommit statement), with the replicas'
  background traffic measured over the same time and subtracted;
* API issuance/s with 8 clients on one replica (the baseline) and spread round-robin
  over three, against the one step-ca: the ratio is what the extra replicas buy;
* PUT-to-all-replicas-serving: from a PUT on a random replica until every replica
  reports the new revision (p50 / p99 over the rotations).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import psycopg
from cryptography import x509
from cryptography.x509 import ocsp

from benchmarks._common import percentile, render_table
from certctl_core.revocation import build_ocsp_request
from tests.postgres import cluster
from tests.replicas.conftest import ISSUER, Clients, Deployment
from tests.server.conftest import make_csr
from tests.server.pki import ocsp_url


def xacts(deployment: Deployment) -> int:
    name = deployment.url.rsplit("/", 1)[1].split("?")[0]
    with psycopg.connect(deployment.postgres.url()) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
            (name,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def settled(deployment: Deployment) -> int:
    time.sleep(1.2)  # backends flush their counters at most once a second
    return xacts(deployment)


def round_trips(deployment: Deployment, count: int) -> tuple[float, float]:
    """(round trips per issuance, per OCSP answer) through replica 0's API."""
    replica = deployment.replicas[0]
    start = settled(deployment)
    began = time.monotonic()
    time.sleep(3)
    idle_rate = (settled(deployment) - start) / (time.monotonic() - began)
    csr = make_csr("rt.replicas.test")[0]
    saved = replica.put("ocsp", deployment.body(deployment.static, responder=True))
    assert saved.status_code == 201, saved.text
    deployment.wait_all_serving(saved.json()["revision"], issuer="ocsp")
    with replica.client() as client:
        # The issuer with a delegated responder (its answers come from the ledger).
        response = client.post("/api/v1/issuers/ocsp/certificates", json={"csr": csr})
        assert response.status_code == 201, response.text
        ocsp_issued = response.json()
        start = settled(deployment)
        began = time.monotonic()
        for _ in range(count):
            response = client.post(f"/api/v1/issuers/{ISSUER}/certificates", json={"csr": csr})
            assert response.status_code == 201, response.text
        issued = response.json()
        per_issue = (settled(deployment) - start - idle_rate * (time.monotonic() - began)) / count
    assert issued["serial"]
    leaf = x509.load_pem_x509_certificate(ocsp_issued["certificate"].encode())
    intermediate = x509.load_pem_x509_certificates(ocsp_issued["chain"].encode())[1]
    request = build_ocsp_request(intermediate, leaf.serial_number)
    url = ocsp_url(replica, "ocsp")
    with httpx.Client(trust_env=False, timeout=30) as client:
        client.post(url, content=request, headers={"content-type": "application/ocsp-request"})
        start = settled(deployment)
        began = time.monotonic()
        for _ in range(count):
            answer = client.post(
                url, content=request, headers={"content-type": "application/ocsp-request"}
            )
            assert answer.status_code == 200
            status = ocsp.load_der_ocsp_response(answer.content).certificate_status
            assert status == ocsp.OCSPCertStatus.GOOD, status
        per_ocsp = (settled(deployment) - start - idle_rate * (time.monotonic() - began)) / count
    return per_issue, per_ocsp


def throughput(deployment: Deployment, replicas: int, seconds: float) -> float:
    """Issuances per second, 8 clients, over the first ``replicas`` replicas."""
    everyone = deployment.replicas
    deployment.replicas = everyone[:replicas]
    try:
        clients = Clients(deployment)
        clients.start()
        clients.wait_for(8)
        first = len(clients.serials)
        began = time.monotonic()
        time.sleep(seconds)
        done = len(clients.serials) - first
        elapsed = time.monotonic() - began
        clients.finish()
        assert clients.failures == [], clients.failures[:3]
    finally:
        deployment.replicas = everyone
    return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="per throughput run")
    parser.add_argument("--rotations", type=int, default=40)
    parser.add_argument("--count", type=int, default=200, help="requests per round-trip run")
    args = parser.parse_args()
    with cluster() as postgres, tempfile.TemporaryDirectory() as root:
        deployment = Deployment(Path(root), postgres)
        try:
            first = deployment.replicas[0].put(ISSUER, deployment.body(deployment.keys[0]))
            assert first.status_code == 201, first.text
            deployment.wait_all_serving(first.json()["revision"])
            deployment.finish_rotation()
            per_issue, per_ocsp = round_trips(deployment, args.count)
            # Interleaved: 1, 3, 1, 3 replicas (the machine's load moves meanwhile).
            one = [throughput(deployment, 1, args.seconds)]
            three = [throughput(deployment, 3, args.seconds)]
            one.append(throughput(deployment, 1, args.seconds))
            three.append(throughput(deployment, 3, args.seconds))
            rng = random.Random(23)  # noqa: S311 - which replica gets the PUT
            took = [deployment.rotate(rng) for _ in range(args.rotations)]
        finally:
            deployment.stop()
    print(
        render_table(
            "PostgreSQL round trips (pg_stat_database transactions, idle traffic subtracted)",
            ["per API issuance", "per OCSP answer"],
            [[f"{per_issue:.2f}", f"{per_ocsp:.2f}"]],
        )
    )
    print(
        render_table(
            "API issuance/s, 8 clients, one step-ca",
            ["1 replica", "3 replicas", "ratio 3/1"],
            [
                [
                    f"{statistics.median(one):.0f}",
                    f"{statistics.median(three):.0f}",
                    f"{statistics.median(three) / statistics.median(one):.2f}",
                ]
            ],
        )
    )
    ms = [t * 1000 for t in took]
    print(
        render_table(
            f"PUT to all 3 replicas serving ({len(ms)} rotations, under no load)",
            ["p50 ms", "p99 ms", "max ms"],
            [[f"{percentile(ms, 0.5):.0f}", f"{percentile(ms, 0.99):.0f}", f"{max(ms):.0f}"]],
        )
    )


if __name__ == "__main__":
    main()
