"""Server misbehaviour no real ACME server produces, replayed with httpx.MockTransport.

Each answer here breaks RFC 8555 in a way that used to escape as a raw exception or do
harm (a token naming a path outside the webroot): the connector must answer with a typed
error and leave nothing behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from certctl_acme import cert_id
from certctl_core import CertctlError, InvalidResponseError
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
    issuer = await _issuer(fake)
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
