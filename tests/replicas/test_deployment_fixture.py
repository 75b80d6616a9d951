"""The deployment fixture itself: a start-up that fails part way leaves no process behind
(a replica or step-ca still running would hold ports and outlive the test run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.postgres import PostgresCluster
from tests.replicas import conftest
from tests.server.conftest import Server

pytestmark = pytest.mark.stepca


def test_a_failed_start_up_stops_what_it_started(
    postgres: PostgresCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[Server] = []
    real_start = Server.start

    def start(server: Server) -> None:
        if started:
            raise RuntimeError("the second replica does not start")
        real_start(server)
        started.append(server)

    monkeypatch.setattr(Server, "start", start)
    made: list[conftest.Deployment] = []
    real_init = conftest.Deployment.__init__

    def init(deployment: conftest.Deployment, root: Path, cluster: PostgresCluster) -> None:
        made.append(deployment)
        real_init(deployment, root, cluster)

    monkeypatch.setattr(conftest.Deployment, "__init__", init)
    with pytest.raises(RuntimeError, match="does not start"):
        conftest.Deployment(tmp_path, postgres)
    assert len(started) == 1
    assert started[0].process is None  # the first replica was stopped
    assert not made[0].ca.running  # and step-ca
