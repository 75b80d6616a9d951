"""The proof of issue 16: three replicas on one PostgreSQL, 8 clients round-robin over
them, the step-ca provisioner rotated 20 times under load: nothing fails, every issued
certificate is in the shared ledger exactly once."""

from __future__ import annotations

import random
import statistics

import psycopg
import pytest

from tests.replicas.conftest import ISSUER, Clients, Deployment

pytestmark = pytest.mark.stepca

ROTATIONS = 20


def ledger_serials(deployment: Deployment) -> list[str]:
    with psycopg.connect(deployment.url) as conn:
        rows = conn.execute(
            "SELECT serial FROM certificates WHERE issuer_id = %s", (ISSUER,)
        ).fetchall()
    return [serial for (serial,) in rows]


def test_twenty_rotations_under_load_lose_nothing(deployment: Deployment) -> None:
    before = set(ledger_serials(deployment))
    clients = Clients(deployment)
    rng = random.Random(16)
    clients.start()
    took: list[float] = []
    try:
        clients.wait_for(8)
        for _ in range(ROTATIONS):
            took.append(deployment.rotate(rng))
            clients.wait_for(3)  # issuance goes on between rotations
    finally:
        clients.finish()
    assert clients.failures == []
    issued = [s.removeprefix("0x").lower() for s in clients.serials]
    assert len(issued) == len(set(issued))
    ledger = [s for s in ledger_serials(deployment) if s not in before]
    assert sorted(ledger) == sorted(issued)  # each one exactly once, nothing else
    print(
        f"\n{len(issued)} certificates; PUT-to-all-replicas-serving p50 "
        f"{statistics.median(took) * 1000:.0f} ms, max {max(took) * 1000:.0f} ms"
    )
