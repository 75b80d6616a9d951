"""Faults under load, on the three-replica deployment: a replica killed, PostgreSQL
restarted, a replica cut off PostgreSQL by the network."""

from __future__ import annotations

import random
import signal
import time

import httpx
import psycopg
import pytest

from tests.replicas.conftest import ISSUER, POLL, STALENESS, Clients, Deployment, within
from tests.replicas.test_rotation_across_replicas import ledger_serials
from tests.server.conftest import TOKEN, make_csr

pytestmark = pytest.mark.stepca


def normal(serials: list[str]) -> list[str]:
    return [s.removeprefix("0x").lower() for s in serials]


def assert_ledger_has(deployment: Deployment, clients: Clients) -> None:
    """Every certificate a client received is in the shared ledger."""
    ledger = set(ledger_serials(deployment))
    received = normal(clients.serials)
    assert len(received) == len(set(received))
    assert set(received) <= ledger


def test_replica_killed_mid_burst_others_serve_and_it_catches_up(
    deployment: Deployment,
) -> None:
    victim = deployment.replicas[1]
    port = int(victim.url.rsplit(":", 1)[1])
    clients = Clients(deployment)
    clients.start()
    try:
        clients.wait_for(8)
        assert victim.process is not None
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait()
        if victim.process.stdout is not None:
            victim.process.stdout.close()
        victim.process = None
        # The others keep serving, and a rotation goes on without the dead replica.
        clients.wait_issued_by(0, 4)
        clients.wait_issued_by(2, 4)
        new = deployment.keys[-1]
        saved = deployment.replicas[0].put(ISSUER, deployment.body(new))
        assert saved.status_code == 200, saved.text
        revision = saved.json()["revision"]
        # Restarted (same id and port): it resyncs to the revision written meanwhile.
        victim.settings["port"] = port
        victim.start()
        deployment.wait_all_serving(revision)
        clients.wait_issued_by(1, 4)
    finally:
        clients.finish()
    # Only requests to the dead replica failed, and only as "no answer".
    assert all(code in (0, 201) for r, _, code, _ in clients.outcomes if r == 1)
    assert all(code == 201 for r, _, code, _ in clients.outcomes if r != 1), clients.failures
    assert_ledger_has(deployment, clients)
    deployment.finish_rotation()


def test_postgres_restart_replicas_reconnect_and_no_received_certificate_is_lost(
    deployment: Deployment,
) -> None:
    clients = Clients(deployment)
    clients.start()
    try:
        clients.wait_for(8)
        began = time.monotonic()
        deployment.postgres.restart()
        restarted = time.monotonic()
        clients.wait_for(16)
    finally:
        clients.finish()
    during = [(code, took) for _, when, code, took in clients.outcomes if when >= began]
    refused = [code for code, _ in during if code != 201]
    slowest = max(took for _, took in during)
    # What clients see: issuance waits for the database (up to the store's retry window)
    # and either succeeds or is refused with 503 + Retry-After; never another answer.
    assert set(refused) <= {503}, clients.failures
    assert_ledger_has(deployment, clients)
    # The replicas reconnected (LISTEN too): a rotation reaches all of them again.
    deployment.rotate(random.Random(1))
    print(
        f"\nPostgreSQL restart took {restarted - began:.2f} s; {len(during)} requests "
        f"answered after it began: {len(refused)} refused with 503, slowest {slowest:.2f} s"
    )


def test_replica_cut_off_postgres_stops_issuing_within_the_bound(
    deployment: Deployment,
) -> None:
    cut = deployment.replicas[2]
    clients = Clients(deployment)
    clients.start()
    try:
        clients.wait_for(8)
        deployment.proxy.cut()
        cut_at = time.monotonic()
        # Another replica writes a new revision the cut one cannot hear of.
        saved = deployment.replicas[0].put(ISSUER, deployment.body(deployment.keys[-1]))
        assert saved.status_code == 200, saved.text
        revision = saved.json()["revision"]
        # Within the bound, the cut replica refuses issuance at once (503, no CA call).
        # (A probe that is still waiting for the database gives up after 0.5 s, so the
        # probes measure when the refusal starts, not how long a stuck request waits.)
        with httpx.Client(
            base_url=cut.url,
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=0.5,
            trust_env=False,
        ) as client:

            def refuses() -> bool:
                try:
                    response = client.post(
                        f"/api/v1/issuers/{ISSUER}/certificates", json={"csr": clients.csrs[0]}
                    )
                except httpx.TimeoutException:
                    return False
                return response.status_code == 503 and "confirm" in response.text

            within(STALENESS + 2 * POLL + 1, refuses, step=0.05)
            refused_after = time.monotonic() - cut_at
            started = time.monotonic()
            assert refuses()
            assert time.monotonic() - started < 1.0  # the guard answers, nothing waits
        # It issued nothing after the bound (every 201 it gave came before).
        late = [
            when - cut_at
            for r, when, code, _ in clients.outcomes
            if r == 2 and code == 201 and when - cut_at > STALENESS
        ]
        assert late == []
        # The others serve the new revision meanwhile.
        clients.wait_issued_by(0, 4)
        deployment.proxy.heal()
        healed = time.monotonic()
        deployment.wait_all_serving(revision)
        caught_up = time.monotonic() - healed
        clients.wait_issued_by(2, 4)
    finally:
        deployment.proxy.heal()
        clients.finish()
    assert all(code in (201, 503) for _, _, code, _ in clients.outcomes), clients.failures
    assert_ledger_has(deployment, clients)
    deployment.finish_rotation()
    print(
        f"\ncut replica refused issuance {refused_after:.2f} s after the cut (bound "
        f"{STALENESS} s + one round); caught up {caught_up:.2f} s after the network healed"
    )
    with psycopg.connect(deployment.url) as conn:
        (count,) = conn.execute("SELECT count(*) FROM replicas").fetchone() or (0,)
    assert count == 3


def test_a_replica_that_cannot_confirm_refuses_issuance_though_its_database_calls_work(
    deployment: Deployment,
) -> None:
    """Only r2's LISTEN connection is cut: its requests' store calls still work, so only
    the staleness guard can stop it issuing; it must within the bound, and resume once it
    has reconnected (its periodic read gives up on the cut connection)."""
    replica = deployment.replicas[2]
    listen: set[int] = set()

    def found() -> bool:
        """r2's LISTEN connection (it may be reconnecting after an earlier test's heal)."""
        with psycopg.connect(deployment.url) as conn:
            rows = conn.execute(
                "SELECT client_port FROM pg_stat_activity WHERE application_name = 'certctl-listen'"
            ).fetchall()
        listen.clear()
        listen.update({port for (port,) in rows} & deployment.proxy.ports)
        return len(listen) == 1

    within(15, found, step=0.1)
    csr = make_csr("confirm.replicas.test")[0]
    with replica.client() as client:

        def status() -> int:
            return client.post(
                f"/api/v1/issuers/{ISSUER}/certificates", json={"csr": csr}
            ).status_code

        assert status() == 201
        try:
            deployment.proxy.cut_ports(listen)
            cut_at = time.monotonic()
            within(STALENESS + 2 * POLL + 1, lambda: status() == 503, step=0.05)
            refused = client.post(f"/api/v1/issuers/{ISSUER}/certificates", json={"csr": csr})
            assert "has not been able to confirm" in refused.text
            assert time.monotonic() - cut_at > STALENESS - 2 * POLL  # not before the bound
            within(20, lambda: status() == 201, step=0.1)  # reconnected on its own
        finally:
            deployment.proxy.heal()
