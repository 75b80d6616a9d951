"""The connector's own HTTP/1.1 transport (asyncio streams + h11) against a real step-ca.

Connections are kept alive and reused, never more than ``max_connections`` are open, a
connection the CA dropped is not reused, a CA that stops answering times out, and an
answer above the size bound is refused and its connection discarded (ADR 0016).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from certctl_core import CATimeoutError
from certctl_stepca import build_stepca_issuer
from certctl_stepca._http import _StreamPool
from certctl_stepca.config import StepCAConfig
from certctl_stepca.harness import StepCA, make_provisioner_key, provisioner_entry
from tests.csr import make_request
from tests.stepca.conftest import CA, BuildIssuer

pytestmark = [pytest.mark.anyio, pytest.mark.stepca]


class Opened:
    """Counts TLS connections the transport opens (and how many are open at once)."""

    def __init__(self) -> None:
        self.total = 0
        self.open_now = 0
        self.most_at_once = 0


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> Opened:
    counter = Opened()
    real = asyncio.open_connection

    async def counting(*args: Any, **kwargs: Any) -> tuple[asyncio.StreamReader, Any]:
        reader, writer = await real(*args, **kwargs)
        counter.total += 1
        counter.open_now += 1
        counter.most_at_once = max(counter.most_at_once, counter.open_now)
        close = writer.close

        def closing() -> None:
            if not writer.is_closing():
                counter.open_now -= 1
            close()

        writer.close = closing  # type: ignore[method-assign]
        return reader, writer

    monkeypatch.setattr(asyncio, "open_connection", counting)
    return counter


async def test_one_connection_serves_every_call_when_issuing_one_after_another(
    make_issuer: BuildIssuer, opened: Opened
) -> None:
    issuer = await make_issuer()
    for i in range(5):
        await issuer.issue(make_request(cn=f"k{i}.example.test", dns=[f"k{i}.example.test"]))
    assert opened.total == 1  # the provisioner lookup and five signs, one kept-alive connection
    await issuer.close()
    assert opened.open_now == 0


async def test_open_connections_stay_within_max_connections_when_many_tasks_issue(
    make_issuer: BuildIssuer, opened: Opened
) -> None:
    issuer = await make_issuer(max_connections=2)
    names = [f"c{i}.example.test" for i in range(12)]
    issued = await asyncio.gather(*(issuer.issue(make_request(cn=n, dns=[n])) for n in names))
    assert sorted(c.sans.dns[0] for c in issued) == sorted(names)
    assert opened.most_at_once <= 2
    await issuer.close()
    assert opened.open_now == 0


@contextlib.contextmanager
def _own_ca(tmp_path: Path, name: str, **overrides: Any) -> Iterator[tuple[StepCA, dict[str, Any]]]:
    """A running step-ca of the test's own (it restarts or freezes it), and a connector
    config for it (made once it listens: a taken port moves it)."""
    key = make_provisioner_key(name, "pw", p2c=1000)
    with StepCA.create(tmp_path / "ca", provisioners=[provisioner_entry(key)]) as process:
        yield (
            process,
            {
                "ca_url": process.url,
                "provisioner_name": key.name,
                "provisioner_key_path": str(key.write_key_file(tmp_path / "key.json")),
                "provisioner_password": "pw",
                "root_cert_path": str(process.root_file),
                "max_retries": 0,
                **overrides,
            },
        )


async def test_connection_dropped_by_a_restarted_ca_is_not_reused_when_issuing_again(
    tmp_path: Path, opened: Opened
) -> None:
    with _own_ca(tmp_path, "restart") as (process, config):
        issuer = await build_stepca_issuer("restart", config, env={})
        try:
            await issuer.issue(make_request())
            await asyncio.to_thread(process.restart)
            await asyncio.sleep(0.05)  # let the loop see the closed connection
            assert (await issuer.issue(make_request())).serial > 0  # no retry allowed
        finally:
            await issuer.close()
    assert opened.total == 2


async def test_answer_above_the_bound_is_refused_and_its_connection_dropped(stepca: CA) -> None:
    config = StepCAConfig.from_mapping(stepca.config(), env={}, issuer_id="bound")
    context = ssl.create_default_context(cafile=str(stepca.process.root_file))
    pool = _StreamPool(config, context)
    body = json.dumps({"csr": "not a csr", "ott": "not a token"}).encode()
    headers = [(b"Content-Type", b"application/json")]

    class TooLargeError(Exception):
        pass

    try:
        answer = await pool.send("POST", "/1.0/sign", headers, lambda: body, 1 << 16, TooLargeError)
        assert answer.status == 400  # step-ca's error document, well under 64 KiB
        assert len(answer.body) > 32
        with pytest.raises(TooLargeError):
            await pool.send("POST", "/1.0/sign", headers, lambda: body, 32, TooLargeError)
        assert not pool._idle  # the half-read connection was closed, not pooled
    finally:
        await pool.aclose()


async def test_ca_that_stops_answering_on_a_kept_alive_connection_times_out(
    tmp_path: Path,
) -> None:
    with _own_ca(tmp_path, "frozen", timeout_seconds=0.5) as (process, config):
        issuer = await build_stepca_issuer("frozen", config, env={})
        pid = process.pid
        assert pid is not None
        try:
            await issuer.issue(make_request())  # a kept-alive connection now exists
            os.kill(pid, signal.SIGSTOP)  # the CA process freezes: no answer, no close
            try:
                with pytest.raises(CATimeoutError):
                    await issuer.issue(make_request())
            finally:
                os.kill(pid, signal.SIGCONT)
            assert (await issuer.issue(make_request())).serial > 0  # usable again
        finally:
            await issuer.close()
