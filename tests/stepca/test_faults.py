"""Faults between the connector and step-ca: down, slow, wrong root, lost answers, 5xx,
garbage.

The real step-ca produces every fault it can (down, wrong root, wrong fingerprint); the
others are produced on real sockets by the TLS fault proxy in front of it
(:class:`certctl_stepca.testing.FaultProxy`), so every test runs the connector's one
production code path, TLS and h11 included. The proxy records each request's token.
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from certctl_core import (
    CATimeoutError,
    CAUnavailableError,
    CAUnreachableError,
    InvalidResponseError,
)
from certctl_stepca.testing import Fault, FaultProxy, Replacement, generate_pki
from tests.csr import make_request
from tests.stepca.conftest import CA, BuildIssuer

pytestmark = [pytest.mark.anyio, pytest.mark.stepca]

SIGN = "/1.0/sign"


def answer(status: int, doc: object, *headers: tuple[str, str]) -> Replacement:
    return Replacement(
        status,
        headers=(("content-type", "application/json"), *headers),
        chunk=json.dumps(doc).encode(),
    )


def signs(proxy: FaultProxy) -> list[int | None]:
    """The CA's status for each sign request the proxy saw (None: never forwarded)."""
    return [r.upstream_status for r in proxy.requests if r.path == SIGN]


async def test_lost_answer_is_retried_with_a_new_token(
    make_issuer: BuildIssuer, proxy: FaultProxy
) -> None:
    proxy.inject(Fault.DROP_AFTER_FORWARD, path=SIGN, times=1)
    issuer = await make_issuer(ca_url=proxy.url)
    assert (await issuer.issue(make_request())).serial > 0
    assert signs(proxy) == [201, 201]  # the CA signed twice: the first one is orphaned
    assert len(set(proxy.jtis(SIGN))) == 2


async def test_503_with_retry_after_is_retried_then_succeeds(
    make_issuer: BuildIssuer, proxy: FaultProxy
) -> None:
    busy = answer(503, {"message": "busy"}, ("retry-after", "0"))
    proxy.inject(Fault.REPLACE, path=SIGN, times=1, replacement=busy)
    issuer = await make_issuer(ca_url=proxy.url)
    assert (await issuer.issue(make_request())).serial > 0
    assert signs(proxy) == [None, 201]
    assert len(set(proxy.jtis(SIGN))) == 2


async def test_persistent_429_gives_transient_error_with_retry_after(
    make_issuer: BuildIssuer, proxy: FaultProxy
) -> None:
    slow_down = answer(429, {"message": "slow down"}, ("retry-after", "0.01"))
    proxy.inject(Fault.REPLACE, path=SIGN, replacement=slow_down)
    issuer = await make_issuer(ca_url=proxy.url, max_retries=2)
    with pytest.raises(CAUnavailableError) as caught:
        await issuer.issue(make_request())
    assert caught.value.status == 429
    assert caught.value.retry_after == pytest.approx(0.01)
    assert caught.value.ca_message == "slow down"
    assert len(set(proxy.jtis(SIGN))) == 3


async def test_oversized_answer_is_refused(make_issuer: BuildIssuer, proxy: FaultProxy) -> None:
    huge = Replacement(201, chunk=b" " * 65536, repeat=32)  # 2 MiB, the limit is 1 MiB
    proxy.inject(Fault.REPLACE, path=SIGN, replacement=huge)
    issuer = await make_issuer(ca_url=proxy.url)
    with pytest.raises(InvalidResponseError, match="exceeds 1048576 bytes"):
        await issuer.issue(make_request())
    assert signs(proxy) == [None]  # an invalid answer is not retried


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"certChain": ["garbage"]}', b'{"certChain": [1, 2]}'],
)
async def test_garbage_sign_answer_is_an_invalid_response(
    make_issuer: BuildIssuer, proxy: FaultProxy, body: bytes
) -> None:
    proxy.inject(Fault.REPLACE, path=SIGN, replacement=Replacement(201, chunk=body))
    issuer = await make_issuer(ca_url=proxy.url)
    with pytest.raises(InvalidResponseError):
        await issuer.issue(make_request())


@pytest.mark.parametrize(
    "raw",
    [
        b"SSH-2.0-OpenSSH_9.2p1\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\n{}",
        b"HTTP/1.1 201 Created\r\nContent-Length: 100\r\n\r\n{}",  # closed mid-body
    ],
    ids=["not-http", "bad-length", "short-body"],
)
async def test_answers_that_are_not_http_are_unreachable_not_foreign_errors(
    make_issuer: BuildIssuer, proxy: FaultProxy, raw: bytes
) -> None:
    proxy.inject(Fault.REPLACE, path=SIGN, replacement=Replacement(raw=raw))
    issuer = await make_issuer(ca_url=proxy.url, max_retries=0)
    with pytest.raises(CAUnreachableError, match="cannot reach the CA") as caught:
        await issuer.issue(make_request())
    assert caught.value.retry_after is not None


async def test_chain_from_another_ca_is_refused(
    make_issuer: BuildIssuer, proxy: FaultProxy, tmp_path: Path
) -> None:
    other = generate_pki(tmp_path / "other")
    pem = other.intermediate_cert.public_bytes(serialization.Encoding.PEM).decode()
    proxy.inject(Fault.REPLACE, path=SIGN, replacement=answer(201, {"certChain": [pem, pem]}))
    issuer = await make_issuer(ca_url=proxy.url)
    with pytest.raises(InvalidResponseError, match="does not verify to the pinned root"):
        await issuer.issue(make_request())


async def test_ca_that_is_down_is_unreachable(make_issuer: BuildIssuer) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    issuer = await make_issuer(ca_url=f"https://127.0.0.1:{port}")
    with pytest.raises(CAUnreachableError) as caught:
        await issuer.issue(make_request())
    assert "is step-ca running" in (caught.value.hint or "")


async def test_ca_that_takes_the_request_and_never_answers_times_out(
    make_issuer: BuildIssuer, proxy: FaultProxy
) -> None:
    proxy.inject(Fault.BLACKHOLE, path=SIGN)
    issuer = await make_issuer(ca_url=proxy.url, timeout_seconds=0.3, max_retries=0)
    with pytest.raises(CATimeoutError) as caught:
        await issuer.issue(make_request())
    assert caught.value.retry_after is not None
    assert [r.fault for r in proxy.requests if r.path == SIGN] == [Fault.BLACKHOLE]


async def test_ca_that_accepts_tcp_and_never_speaks_tls_times_out(
    make_issuer: BuildIssuer,
) -> None:
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        issuer = await make_issuer(
            ca_url=f"https://127.0.0.1:{port}", timeout_seconds=0.3, max_retries=0
        )
        with pytest.raises(CATimeoutError):
            await issuer.issue(make_request())
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_ca_behind_a_different_root_is_refused_not_trusted(
    make_issuer: BuildIssuer, tmp_path: Path
) -> None:
    other = generate_pki(tmp_path / "other")
    issuer = await make_issuer(root_cert_path=str(other.root_cert_path))
    with pytest.raises(InvalidResponseError, match="does not chain to the pinned root"):
        await issuer.issue(make_request())


async def test_root_fingerprint_alone_pins_the_root(make_issuer: BuildIssuer, stepca: CA) -> None:
    issuer = await make_issuer(
        root_cert_path=None, root_fingerprint=stepca.process.pki.root_fingerprint
    )
    assert (await issuer.issue(make_request())).serial > 0
    assert (await issuer.ca_chain())[-1] == stepca.process.pki.root_cert


async def test_wrong_root_fingerprint_is_refused(make_issuer: BuildIssuer) -> None:
    issuer = await make_issuer(root_cert_path=None, root_fingerprint="ab" * 32)
    with pytest.raises(InvalidResponseError, match="pinned fingerprint"):
        await issuer.issue(make_request())


async def test_root_bootstrap_answer_that_is_compressed_is_refused(
    make_issuer: BuildIssuer, stepca: CA, proxy: FaultProxy
) -> None:
    gzip = Replacement(200, headers=(("content-encoding", "gzip"),), chunk=b"\x1f\x8b")
    proxy.inject(Fault.REPLACE, path="/root/", replacement=gzip)
    issuer = await make_issuer(
        ca_url=proxy.url, root_cert_path=None, root_fingerprint=stepca.process.pki.root_fingerprint
    )
    with pytest.raises(InvalidResponseError, match="compressed"):
        await issuer.issue(make_request())
