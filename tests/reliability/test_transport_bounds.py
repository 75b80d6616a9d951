"""The step-ca transport's bounds: a whole exchange within timeout_seconds, nothing unread
reused, idle connections expired, no reopening after close."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from certctl_core import CATimeoutError, CAUnavailableError, IssuerClosedError
from certctl_stepca import _http
from certctl_stepca._http import CAClient, load_root
from certctl_stepca.config import StepCAConfig
from certctl_stepca.harness import Fault, Replacement
from certctl_stepca.harness._proxy import _serve_certificate
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


class StubCA:
    """A TLS server with a certificate from the step-ca's intermediate, answering GETs with
    scripted bytes; counts connections and requests."""

    def __init__(self, answers: list[bytes]) -> None:
        self.answers = answers
        self.connections = 0
        self.requests = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                answer = self.answers[min(self.requests, len(self.answers) - 1)]
                self.requests += 1
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


@pytest.fixture
async def stub_client(faulty: FaultyCA, tmp_path: Path) -> AsyncIterator[tuple[StubCA, CAClient]]:
    cert, key = _serve_certificate(faulty.process.pki, tmp_path / "stub")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    stub = StubCA([])
    server = await asyncio.start_server(stub.handle, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    config = StepCAConfig.from_mapping(faulty.config(ca_url=f"https://127.0.0.1:{port}"), env={})
    client = CAClient(config, load_root(config), where={"issuer_id": "stub", "connector": "stepca"})
    yield stub, client
    await client.aclose()
    server.close()
    await server.wait_closed()


def _ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


async def test_bytes_after_an_answer_are_never_the_next_answer(
    stub_client: tuple[StubCA, CAClient],
) -> None:
    stub, client = stub_client
    # The first answer is followed by a second, unrequested one on the same connection.
    stub.answers[:] = [_ok(b"{}") + _ok(b'{"evil":1}'), _ok(b'{"n":2}')]
    assert (await client.request("GET", "/one")).json() == {}
    assert (await client.request("GET", "/two")).json() == {"n": 2}
    assert stub.connections == 2  # the tainted connection was not reused


@pytest.mark.parametrize(("expiry", "connections"), [(60.0, 1), (-1.0, 2)])
async def test_idle_connections_are_reused_only_within_the_keepalive_expiry(
    stub_client: tuple[StubCA, CAClient],
    monkeypatch: pytest.MonkeyPatch,
    expiry: float,
    connections: int,
) -> None:
    stub, client = stub_client
    monkeypatch.setattr(_http, "KEEPALIVE_EXPIRY", expiry)
    stub.answers[:] = [_ok(b"{}")]
    for _ in range(2):
        assert (await client.request("GET", "/")).status == 200
    assert stub.connections == connections
