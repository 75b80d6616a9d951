"""Faults between the connector and step-ca: down, slow, wrong root, lost answers, 5xx.

The real step-ca is used wherever it can produce the fault; a forwarding transport
drops or replaces answers that a real step-ca cannot be made to lose.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from certctl_core import (
    CATimeoutError,
    CAUnavailableError,
    CAUnreachableError,
    InvalidResponseError,
)
from certctl_stepca.harness import generate_pki
from tests.csr import make_request
from tests.stepca.conftest import CA, BuildIssuer

pytestmark = [pytest.mark.anyio, pytest.mark.stepca]


def token_jti(request: httpx.Request) -> str:
    ott = json.loads(request.content)["ott"]
    payload = ott.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"])


class Forwarding(httpx.AsyncBaseTransport):
    """Forwards to the real step-ca; ``fault(request, n)`` may replace the n-th answer."""

    def __init__(self, stepca: CA, fault: Callable[[httpx.Request, int], httpx.Response | None]):
        self.real = httpx.AsyncHTTPTransport(verify=stepca.process.ssl_context())
        self.fault = fault
        self.signs: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/1.0/sign":
            await request.aread()
            self.signs.append(request)
            replaced = self.fault(request, len(self.signs))
            if replaced is not None:
                return replaced
        return await self.real.handle_async_request(request)

    async def aclose(self) -> None:
        await self.real.aclose()


async def test_lost_answer_is_retried_with_a_new_token(
    make_issuer: BuildIssuer, stepca: CA
) -> None:
    class DropFirst(Forwarding):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            response = await super().handle_async_request(request)
            if request.url.path == "/1.0/sign" and len(self.signs) == 1:
                await response.aread()  # the CA processed it and spent the token...
                assert response.status_code == 201
                raise httpx.ReadError("connection reset after the CA answered")
            return response

    transport = DropFirst(stepca, lambda r, n: None)
    issuer = await make_issuer(transport=transport)
    issued = await issuer.issue(make_request())
    assert issued.serial > 0
    assert len(transport.signs) == 2
    assert token_jti(transport.signs[0]) != token_jti(transport.signs[1])


async def test_503_with_retry_after_is_retried_then_succeeds(
    make_issuer: BuildIssuer, stepca: CA
) -> None:
    def fault(request: httpx.Request, n: int) -> httpx.Response | None:
        if n == 1:
            return httpx.Response(503, json={"message": "busy"}, headers={"Retry-After": "0"})
        return None

    transport = Forwarding(stepca, fault)
    issuer = await make_issuer(transport=transport)
    assert (await issuer.issue(make_request())).serial > 0
    assert len({token_jti(r) for r in transport.signs}) == 2


async def test_persistent_429_gives_transient_error_with_retry_after(
    make_issuer: BuildIssuer, stepca: CA
) -> None:
    transport = Forwarding(
        stepca,
        lambda r, n: httpx.Response(
            429, json={"message": "slow down"}, headers={"Retry-After": "0.01"}
        ),
    )
    issuer = await make_issuer(transport=transport, max_retries=2)
    with pytest.raises(CAUnavailableError) as caught:
        await issuer.issue(make_request())
    assert caught.value.status == 429
    assert caught.value.retry_after == pytest.approx(0.01)
    assert caught.value.ca_message == "slow down"
    assert len(transport.signs) == 3


async def test_oversized_answer_is_refused(make_issuer: BuildIssuer, stepca: CA) -> None:
    huge = httpx.Response(201, content=b"{" + b" " * (2 << 20) + b"}")
    issuer = await make_issuer(transport=Forwarding(stepca, lambda r, n: huge))
    with pytest.raises(InvalidResponseError, match="exceeds"):
        await issuer.issue(make_request())


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"certChain": ["garbage"]}', b'{"certChain": [1, 2]}'],
)
async def test_garbage_sign_answer_is_an_invalid_response(
    make_issuer: BuildIssuer, stepca: CA, body: bytes
) -> None:
    bad = httpx.Response(201, content=body)
    issuer = await make_issuer(transport=Forwarding(stepca, lambda r, n: bad))
    with pytest.raises(InvalidResponseError):
        await issuer.issue(make_request())


async def test_chain_from_another_ca_is_refused(
    make_issuer: BuildIssuer, stepca: CA, tmp_path: Path
) -> None:
    other = generate_pki(tmp_path / "other")
    from cryptography.hazmat.primitives import serialization

    def fault(request: httpx.Request, n: int) -> httpx.Response:
        pem = other.intermediate_cert.public_bytes(serialization.Encoding.PEM).decode()
        return httpx.Response(201, json={"certChain": [pem, pem]})

    issuer = await make_issuer(transport=Forwarding(stepca, fault))
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


async def test_ca_that_accepts_and_never_answers_times_out(make_issuer: BuildIssuer) -> None:
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


async def test_transport_protocol_errors_do_not_escape(make_issuer: BuildIssuer) -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("peer spoke nonsense")

    issuer = await make_issuer(transport=httpx.MockTransport(boom), max_retries=0)
    with pytest.raises(CAUnreachableError):
        await issuer.issue(make_request())
