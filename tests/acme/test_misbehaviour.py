"""Server misbehaviour no real ACME server produces, replayed with httpx.MockTransport.

Each answer here breaks RFC 8555 in a way that used to escape as a raw exception or do
harm (a token naming a path outside the webroot): the connector must answer with a typed
error and leave nothing behind.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from certctl_acme import build_acme_issuer, cert_id
from certctl_acme._client import MAX_RETRY_AFTER
from certctl_acme._jose import generate_account_key
from certctl_contracts.csr import build_csr, new_private_key
from certctl_core import (
    CATimeoutError,
    CAUnavailableError,
    CAUnreachableError,
    CertctlError,
    CertificateRequest,
    InvalidResponseError,
    RejectedError,
    SubjectAltNames,
    TransientError,
)
from tests.acme.conftest import request_for
from tests.acme.test_recorded import BASE, RECORDED, FakeAcme, _issuer

pytestmark = [pytest.mark.anyio]


def _pending(challenges: Any, value: Any = "x.example.test") -> dict[str, Any]:
    return {
        "status": "pending",
        "identifier": {"type": "dns", "value": value},
        "challenges": challenges,
    }


def _http01(token: str) -> list[dict[str, str]]:
    return [{"type": "http-01", "url": f"{BASE}/chal/1", "token": token, "status": "pending"}]


@pytest.mark.parametrize(
    "token", ["./../../../escaped-by-the-server-token", "short", "caf\u00e9" * 8, "a/b" * 10]
)
async def test_a_token_that_is_no_base64url_is_refused_before_any_file_is_written(
    tmp_path: Path, token: str
) -> None:
    webroot = tmp_path / "srv" / "www"
    webroot.mkdir(parents=True)
    fake = FakeAcme()
    fake.scripted["/authz/1"] = [(200, {}, _pending(_http01(token)))]
    issuer = await _issuer(fake, webroot=str(webroot))
    try:
        with pytest.raises(InvalidResponseError, match="token"):
            await issuer.issue(request_for("x.example.test"))
    finally:
        await issuer.close()
    files = [p for p in tmp_path.rglob("*") if not p.is_dir()]  # noqa: ASYNC240
    assert files == []


async def test_a_non_ascii_token_with_dns01_is_an_invalid_response(tmp_path: Path) -> None:
    hook = tmp_path / "hook.sh"
    hook.write_text("#!/bin/sh\ntouch " + str(tmp_path / "ran") + "\n")
    hook.chmod(0o755)
    fake = FakeAcme()
    challenge = [{"type": "dns-01", "url": f"{BASE}/chal/1", "token": "\u00e9" * 43}]
    fake.scripted["/authz/1"] = [(200, {}, _pending(challenge))]
    issuer = await _issuer(fake, challenge="dns-01", dns_hook=str(hook))
    try:
        with pytest.raises(InvalidResponseError, match="token"):
            await issuer.issue(request_for("x.example.test"))
    finally:
        await issuer.close()
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize(
    ("path", "answer"),
    [
        ("/authz/1", (200, {}, _pending(5))),
        ("/authz/1", (200, {}, _pending(_http01("A" * 43), value=["a", "list"]))),
        ("/authz/1", (200, {}, _pending(_http01("A" * 43), value="bad name\u00e9"))),
        ("/authz/1", (200, {}, b'{"a":' * 100_000)),
        ("/authz/1", (200, {}, b"[" * 100_000)),
        ("/order", (201, {"location": f"{BASE}/order/1"}, {"authorizations": 7})),
        ("/finalize/1", (200, {}, {"status": "valid", "certificate": 5})),
        ("/finalize/1", (200, {}, {"status": ["valid"]})),
    ],
    ids=[
        "challenges-a-number",
        "identifier-a-list",
        "identifier-not-a-name",
        "deep-object",
        "deep-array",
        "authorizations-a-number",
        "certificate-a-number",
        "status-a-list",
    ],
)
async def test_malformed_answers_are_invalid_responses(
    path: str, answer: tuple[int, dict[str, str], Any]
) -> None:
    fake = FakeAcme()
    fake.scripted[path] = [answer]
    issuer = await _issuer(fake)
    try:
        with pytest.raises(InvalidResponseError):
            await issuer.issue(request_for("x.example.test"))
    finally:
        await issuer.close()


@pytest.mark.parametrize(
    "body",
    [
        {"type": "urn:ietf:params:acme:error:rejectedIdentifier", "subproblems": 7},
        {"type": "urn:ietf:params:acme:error:malformed", "subproblems": [7, {"identifier": 5}]},
        b'{"type":' * 100_000,
    ],
    ids=["subproblems-a-number", "subproblems-odd", "deep-problem"],
)
async def test_malformed_problem_documents_are_still_typed(body: Any) -> None:
    fake = FakeAcme()
    fake.scripted["/order"] = [(400, {"content-type": "application/problem+json"}, body)]
    issuer = await _issuer(fake)
    try:
        with pytest.raises(CertctlError) as caught:
            await issuer.issue(request_for("x.example.test"))
        assert "400" in caught.value.message
    finally:
        await issuer.close()


async def test_a_malformed_renewal_info_is_an_invalid_response() -> None:
    fake = FakeAcme()
    issuer = await _issuer(fake, renewal_info=True)
    try:
        issued = await issuer.issue(request_for("x.example.test"))
        path = f"{RECORDED['renewal_info']['path']}/{cert_id(issued.certificate)}"
        fake.scripted[path] = [
            (200, {}, b"[" * 100_000),
            (200, {}, {"suggestedWindow": {"start": 5, "end": []}}),
            (200, {}, {"suggestedWindow": ["start"]}),
        ]
        for _ in range(3):
            with pytest.raises(InvalidResponseError):
                await issuer.renewal_info(issued.certificate)
    finally:
        await issuer.close()


def _dropping(fake: FakeAcme, path: str, times: int = 1) -> httpx.MockTransport:
    """The fake, but the connection breaks after the server acted on ``path``'s POST."""
    left = [times]

    def handler(request: httpx.Request) -> httpx.Response:
        answer = fake.handler(request)
        if request.url.path == path and request.method == "POST" and left[0] > 0:
            left[0] -= 1
            raise httpx.RemoteProtocolError("Server disconnected without sending a response")
        return answer

    return httpx.MockTransport(handler)


def _posts(fake: FakeAcme, path: str) -> list[Any]:
    return [payload for seen, payload, _ in fake.payloads if seen == path]


async def test_a_key_rollover_whose_answer_is_lost_is_not_resent_and_the_new_key_is_kept() -> None:
    fake = FakeAcme()
    issuer = await build_acme_issuer(
        "recorded",
        {"directory_url": f"{BASE}/dir", "http_address": "127.0.0.1:0"},
        transport=_dropping(fake, "/key"),
    )
    try:
        kid = await issuer.account_url()
        new = generate_account_key()
        await issuer.rollover_account_key(new.pem())
        assert issuer.account_key.thumbprint == new.thumbprint
        assert len(_posts(fake, "/key")) == 1  # never resent with the old key
        lookup = [p for p in fake.payloads if p[0] == "/account"][-1]
        assert lookup[1] == {"onlyReturnExisting": True} and lookup[2]["jwk"] == new.jwk
        assert kid == f"{BASE}/acct/1"
    finally:
        await issuer.close()


async def test_a_refused_key_rollover_keeps_the_old_key() -> None:
    fake = FakeAcme()
    refused = {"type": "urn:ietf:params:acme:error:unauthorized", "detail": "no"}
    fake.scripted["/key"] = [(403, {}, refused)]
    issuer = await _issuer(fake)
    try:
        await issuer.account_url()
        old = issuer.account_key.thumbprint
        # The lookup with the new key finds no account.
        missing = {"type": "urn:ietf:params:acme:error:accountDoesNotExist", "detail": "none"}
        fake.scripted["/account"] = [(400, {}, missing)]
        with pytest.raises(RejectedError, match="unauthorized"):
            await issuer.rollover_account_key(generate_account_key().pem())
        assert issuer.account_key.thumbprint == old
    finally:
        await issuer.close()


async def test_a_new_order_whose_answer_is_lost_is_not_resent() -> None:
    fake = FakeAcme()
    issuer = await build_acme_issuer(
        "recorded",
        {"directory_url": f"{BASE}/dir", "http_address": "127.0.0.1:0"},
        transport=_dropping(fake, "/order"),
    )
    try:
        with pytest.raises(CAUnreachableError):
            await issuer.issue(request_for("x.example.test"))
        assert len(_posts(fake, "/order")) == 1
    finally:
        await issuer.close()


async def test_a_5xx_asking_for_a_long_wait_is_not_retried_inline() -> None:
    fake = FakeAcme()
    busy = {"type": "urn:ietf:params:acme:error:serverInternal", "detail": "busy"}
    fake.scripted["/order"] = [(503, {"retry-after": "120"}, busy)]
    issuer = await _issuer(fake)
    try:
        with pytest.raises(CAUnavailableError) as caught:
            await issuer.issue(request_for("x.example.test"))
        assert caught.value.retry_after == 120
        assert len(_posts(fake, "/order")) == 1
        # An absurd Retry-After is a day, not infinity.
        fake.scripted["/order"] = [(503, {"retry-after": "9" * 400}, busy)]
        with pytest.raises(CAUnavailableError) as caught:
            await issuer.issue(request_for("x.example.test"))
        assert caught.value.retry_after == MAX_RETRY_AFTER
        # A short one is retried inline and the order goes through.
        fake.scripted["/order"] = [(503, {"retry-after": "0"}, busy)]
        await issuer.issue(request_for("x.example.test"))
    finally:
        await issuer.close()


async def test_relative_location_and_link_urls_are_resolved_and_a_bad_alternate_is_skipped() -> (
    None
):
    fake = FakeAcme()
    order = {"status": "ready", "authorizations": [f"{BASE}/authz/1"], "finalize": "x"}
    order["finalize"] = f"{BASE}/finalize/1"
    fake.scripted["/order"] = [(201, {"location": "/order/1"}, order)]
    # An alternate chain the server links relatively, then cannot serve (404).
    fake.cert_headers = {"link": '</cert/2>;rel="alternate"'}
    issuer = await _issuer(fake, preferred_chain="Some Other Root")
    try:
        issued = await issuer.issue(request_for("x.example.test"))
        assert issued.serial in issuer._issued
        fetched = [path for path, _, _ in fake.payloads]
        assert "/cert/2" in fetched  # resolved against the certificate's URL
    finally:
        await issuer.close()


class _Drip(httpx.AsyncByteStream):
    """A body trickling in: each read is quick, the whole takes ``count * pause`` s."""

    def __init__(self, count: int, pause: float) -> None:
        self.count, self.pause = count, pause

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"{"
        for _ in range(self.count):
            await asyncio.sleep(self.pause)
            yield b" "
        yield b"}"


async def test_timeout_seconds_bounds_the_whole_exchange_not_each_read() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=_Drip(40, 0.05))

    issuer = await build_acme_issuer(
        "recorded",
        {"directory_url": f"{BASE}/dir", "timeout_seconds": 0.5},
        transport=httpx.MockTransport(handler),
    )
    try:
        started = time.monotonic()
        with pytest.raises(CATimeoutError):
            await issuer.issue(request_for("x.example.test"))
        assert time.monotonic() - started < 1.5
    finally:
        await issuer.close()


async def test_duplicate_identifiers_are_ordered_once() -> None:
    csr, _ = build_csr(
        SubjectAltNames(
            dns=("A.example.test", "a.example.test"),
            ips=(ipaddress.ip_address("2001:db8::1"),),
        ),
        common_name="2001:DB8:0::1",
        key=new_private_key("ec-p256"),
    )
    fake = FakeAcme()
    issuer = await _issuer(fake)
    try:
        await issuer.issue(CertificateRequest.from_csr(csr))
    finally:
        await issuer.close()
    (order,) = _posts(fake, "/order")
    assert order["identifiers"] == [
        {"type": "dns", "value": "a.example.test"},
        {"type": "ip", "value": "2001:db8::1"},
    ]


@pytest.mark.parametrize("final", ["deactivated", "expired", "revoked"])
async def test_an_authorization_that_ends_is_rejected_at_once(final: str) -> None:
    fake = FakeAcme()
    fake.scripted["/authz/1"] = [
        (200, {}, _pending(_http01("A" * 43))),
        (200, {}, {**_pending(_http01("A" * 43)), "status": final}),
    ]
    issuer = await _issuer(fake, poll_timeout_seconds=5)
    try:
        started = time.monotonic()
        with pytest.raises(RejectedError, match=final):
            await issuer.issue(request_for("x.example.test"))
        assert time.monotonic() - started < 2
    finally:
        await issuer.close()


async def test_finalize_of_an_order_gone_invalid_is_rejected_not_retried() -> None:
    fake = FakeAcme()
    not_ready = {"type": "urn:ietf:params:acme:error:orderNotReady", "detail": "not ready"}
    fake.scripted["/finalize/1"] = [(403, {}, not_ready)] * 300
    error = {"type": "urn:ietf:params:acme:error:unauthorized", "detail": "authz failed"}
    fake.scripted["/order/1"] = [(200, {}, {"status": "invalid", "error": error})]
    issuer = await _issuer(fake, poll_timeout_seconds=3)
    try:
        with pytest.raises(RejectedError, match="authz failed"):
            await issuer.issue(request_for("x.example.test"))
        assert len(_posts(fake, "/finalize/1")) == 1
    finally:
        await issuer.close()


async def test_poll_timeout_seconds_bounds_the_whole_order() -> None:
    fake = FakeAcme()
    # Validation takes one Retry-After (1 s), issuance another: 2 s > 1.5 s.
    fake.scripted["/authz/1"] = [
        (200, {}, _pending(_http01("A" * 43))),
        (200, {"retry-after": "1"}, _pending(_http01("A" * 43))),
    ]
    fake.scripted["/finalize/1"] = [(200, {"retry-after": "1"}, {"status": "processing"})]
    issuer = await _issuer(fake, poll_timeout_seconds=1.5)
    try:
        with pytest.raises(TransientError, match=r"did not finish within 1\.5 s"):
            await issuer.issue(request_for("x.example.test"))
    finally:
        await issuer.close()


async def test_a_key_rollover_waits_for_the_order_in_flight_and_holds_new_ones() -> None:
    fake = FakeAcme()
    pending: tuple[int, dict[str, str], Any] = (200, {}, _pending(_http01("A" * 43)))
    fake.scripted["/authz/1"] = [pending] * 6  # validation takes a few polls
    issuer = await _issuer(fake, poll_interval_seconds=0.05)
    try:
        await issuer.account_url()
        first = asyncio.create_task(issuer.issue(request_for("x.example.test")))
        for _ in range(200):  # until the order is validating
            if _posts(fake, "/chal/1"):
                break
            await asyncio.sleep(0.01)
        rollover = asyncio.create_task(issuer.rollover_account_key(generate_account_key().pem()))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(issuer.issue(request_for("y.example.test")))
        await asyncio.gather(first, rollover, second)
    finally:
        await issuer.close()
    paths = [path for path, _, _ in fake.payloads]
    key_at = paths.index("/key")
    downloads = [i for i, path in enumerate(paths) if path == "/cert/1"]
    # The first order finished with the old key, the second started with the new one.
    assert downloads[0] < key_at < [i for i, p in enumerate(paths) if p == "/order"][1]
