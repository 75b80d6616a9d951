"""The step-ca transport's bounds: a whole exchange within timeout_seconds, nothing unread
reused, idle connections expired, no reopening after close.

Every fault comes from the TLS fault proxy in front of a real step-ca, on the connector's
production code path.
"""

from __future__ import annotations

import asyncio

import pytest

from certctl_core import CATimeoutError, CAUnavailableError, IssuerClosedError
from certctl_stepca import _http
from certctl_stepca.testing import Fault, Replacement
from tests.csr import make_request
from tests.reliability.conftest import BuildIssuer, FaultyCA

pytestmark = [pytest.mark.anyio, pytest.mark.stepca]


async def test_a_dripping_answer_is_cut_at_timeout_seconds(
    faulty: FaultyCA, make_faulty_issuer: BuildIssuer
) -> None:
    # One byte every 0.2 s: every read is quick, the answer never ends.
    drip = Replacement(201, chunk=b" ", repeat=None, content_length=False, interval=0.2)
    faulty.proxy.inject(Fault.REPLACE, path="/1.0/sign", replacement=drip)
    issuer = await make_faulty_issuer(timeout_seconds=1, max_retries=0)
    with pytest.raises(CATimeoutError):
        # The outer bound only keeps a regression from hanging the run.
        await asyncio.wait_for(issuer.issue(make_request()), 60)


async def test_a_retry_after_close_does_not_reopen_the_pool(
    faulty: FaultyCA, make_faulty_issuer: BuildIssuer
) -> None:
    busy = Replacement(503, headers=(("retry-after", "1"),), chunk=b'{"message":"busy"}')
    faulty.proxy.inject(Fault.REPLACE, path="/1.0/sign", times=1, replacement=busy)
    issuer = await make_faulty_issuer(max_retries=1)
    call = asyncio.ensure_future(issuer.issue(make_request()))
    # The proxy records from its own thread: poll until the first attempt was answered 503.
    while not faulty.proxy.jtis("/1.0/sign"):  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    await issuer.close()  # while the call sleeps before its retry
    with pytest.raises(IssuerClosedError):
        await call
    assert len(faulty.proxy.jtis("/1.0/sign")) == 1


async def test_long_retry_after_is_handed_to_the_caller_not_waited_for(
    faulty: FaultyCA, make_faulty_issuer: BuildIssuer
) -> None:
    slow_down = Replacement(429, headers=(("retry-after", "120"),), chunk=b"{}")
    faulty.proxy.inject(Fault.REPLACE, path="/1.0/sign", replacement=slow_down)
    issuer = await make_faulty_issuer(max_retries=2)
    with pytest.raises(CAUnavailableError) as caught:
        await issuer.issue(make_request())
    assert caught.value.retry_after == 120
    assert len(faulty.proxy.jtis("/1.0/sign")) == 1  # no token spent on a certain refusal


async def test_bytes_after_an_answer_are_never_the_next_answer(
    faulty: FaultyCA, make_faulty_issuer: BuildIssuer
) -> None:
    # The CA's real answer to /health is followed by a second, unrequested one.
    evil = b'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{"evil":1}'
    faulty.proxy.inject(Fault.APPEND, path="/health", times=1, replacement=Replacement(raw=evil))
    issuer = await make_faulty_issuer()
    client = issuer._client
    first = await client.request("GET", "/health")
    assert first.json() == {"status": "ok"}
    # However the extra bytes arrived (with the answer or just after), the next request
    # must not take them: it goes out on a new connection and gets the CA's own answer.
    await asyncio.sleep(0.1)
    second = await client.request("GET", "/health")
    assert second.json() == {"status": "ok"}
    assert faulty.proxy.accepted_connections == 2  # the tainted connection was not reused
    assert [r.fault for r in faulty.proxy.requests] == [Fault.APPEND, Fault.NONE]


@pytest.mark.parametrize(("expiry", "connections"), [(60.0, 1), (-1.0, 2)])
async def test_idle_connections_are_reused_only_within_the_keepalive_expiry(
    faulty: FaultyCA,
    make_faulty_issuer: BuildIssuer,
    monkeypatch: pytest.MonkeyPatch,
    expiry: float,
    connections: int,
) -> None:
    monkeypatch.setattr(_http, "KEEPALIVE_EXPIRY", expiry)
    issuer = await make_faulty_issuer()
    for _ in range(2):
        assert (await issuer._client.request("GET", "/health")).status == 200
    assert faulty.proxy.accepted_connections == connections
