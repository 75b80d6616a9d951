"""ARI, profiles, badNonce and rate limits against recorded answers (httpx.MockTransport).

What the real servers cannot be made to do on demand is replayed here from
``recorded/ari-and-profiles.json`` (see its ``_about``): ``badNonce`` twice in a row,
``rateLimited``, ``invalidProfile`` for a profile the directory listed, broken
directories. ARI and profiles are tested for real against Pebble 2.10 in
test_pebble_newer.py; the cases here pin the wire details (the RFC 9773 certID example,
which order carries ``replaces`` and ``profile``) without a server.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certctl_acme import build_acme_issuer, cert_id
from certctl_core import (
    CAUnavailableError,
    InvalidRequestError,
    InvalidResponseError,
    PolicyViolationError,
    Profile,
    UnsupportedCapabilityError,
)
from tests.acme.conftest import request_for

pytestmark = [pytest.mark.anyio]

RECORDED = json.loads((Path(__file__).parent / "recorded" / "ari-and-profiles.json").read_text())
BASE = "https://acme.recorded.test"


def _b64(data: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)) or b"null")


@attrs.define
class FakeAcme:
    """Replays the recorded answers; records every JWS payload it got, by path."""

    ari: bool = True
    profiles: bool = True
    payloads: list[tuple[str, Any, dict[str, Any]]] = attrs.field(factory=list)
    #: path -> list of (status, headers, body) answered before the normal one
    scripted: dict[str, list[tuple[int, dict[str, str], Any]]] = attrs.field(factory=dict)
    nonce: int = 0
    ca_key: ec.EllipticCurvePrivateKey = attrs.field(
        factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    csr: x509.CertificateSigningRequest | None = None
    #: extra headers of the certificate download (e.g. Link rel="alternate")
    cert_headers: dict[str, str] = attrs.field(factory=dict)

    def _nonce(self) -> str:
        self.nonce += 1
        return f"nonce-{self.nonce}"

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        headers = {"replay-nonce": self._nonce()}
        if request.method == "POST":
            jws = json.loads(request.content)
            protected = _b64(jws["protected"])
            self.payloads.append(
                (path, _b64(jws["payload"]) if jws["payload"] else None, protected)
            )
        if path == "/finalize/1":
            payload = self.payloads[-1][1]
            der = base64.urlsafe_b64decode(payload["csr"] + "=" * (-len(payload["csr"]) % 4))
            self.csr = x509.load_der_x509_csr(der)
        queue = self.scripted.get(path)
        if queue:
            status, extra, body = queue.pop(0)
            if isinstance(body, bytes):
                return httpx.Response(status, headers={**headers, **extra}, content=body)
            return httpx.Response(status, headers={**headers, **extra}, json=body)
        if path == "/dir":
            directory: dict[str, Any] = {
                "newNonce": f"{BASE}/nonce",
                "newAccount": f"{BASE}/account",
                "newOrder": f"{BASE}/order",
                "revokeCert": f"{BASE}/revoke",
                "keyChange": f"{BASE}/key",
                "meta": dict(RECORDED["directory_meta"]),
            }
            if not self.profiles:
                directory["meta"].pop("profiles")
            if self.ari:
                directory["renewalInfo"] = BASE + RECORDED["renewal_info"]["path"]
            return httpx.Response(200, json=directory)
        if path == "/nonce":
            return httpx.Response(200, headers=headers)
        if path == "/account":
            return httpx.Response(
                201, headers={**headers, "location": f"{BASE}/acct/1"}, json={"status": "valid"}
            )
        if path == "/order":
            return httpx.Response(
                201,
                headers={**headers, "location": f"{BASE}/order/1"},
                json={
                    "status": "ready",
                    "authorizations": [f"{BASE}/authz/1"],
                    "finalize": f"{BASE}/finalize/1",
                },
            )
        if path == "/authz/1":
            return httpx.Response(
                200,
                headers=headers,
                json={"status": "valid", "identifier": {"type": "dns", "value": "x"}},
            )
        if path == "/finalize/1":
            return httpx.Response(
                200, headers=headers, json={"status": "valid", "certificate": f"{BASE}/cert/1"}
            )
        if path == "/order/1":
            return httpx.Response(
                200, headers=headers, json={"status": "valid", "certificate": f"{BASE}/cert/1"}
            )
        if path.startswith("/chal/"):
            return httpx.Response(200, headers=headers, json={"status": "processing"})
        if path == "/cert/1":
            return httpx.Response(
                200,
                headers={
                    **headers,
                    **self.cert_headers,
                    "content-type": "application/pem-certificate-chain",
                },
                content=self._chain(),
            )
        if path.startswith(RECORDED["renewal_info"]["path"] + "/"):
            return httpx.Response(
                200,
                headers={"retry-after": RECORDED["renewal_info"]["retry_after"]},
                json=RECORDED["renewal_info"]["body"],
            )
        return httpx.Response(
            404, json={"type": "urn:ietf:params:acme:error:malformed", "detail": "no such path"}
        )

    def _chain(self) -> bytes:
        assert self.csr is not None
        now = dt.datetime.now(dt.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Recorded Intermediate")])
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(name)
            .public_key(self.csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(
                self.csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value,
                critical=True,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()),
                critical=False,
            )
            .sign(self.ca_key, hashes.SHA256())
        )
        return leaf.public_bytes(serialization.Encoding.PEM)


Build = Callable[..., Any]


@pytest.fixture
async def fake() -> Any:
    return FakeAcme()


async def _issuer(fake: FakeAcme, **config: Any) -> Any:
    settings = {
        "directory_url": f"{BASE}/dir",
        "http_address": "127.0.0.1:0",
        "poll_interval_seconds": 0.01,
    }
    settings.update(config)
    return await build_acme_issuer(
        "recorded", settings, transport=httpx.MockTransport(fake.handler)
    )


def test_cert_id_is_rfc_9773s_example() -> None:
    # RFC 9773 section 4.1: keyIdentifier 69:88:5B:..., serial 00:87:65:43:21.
    key = ec.generate_private_key(ec.SECP256R1())
    aki = bytes.fromhex("69885B6B87464041E1B37B847BA0AE2CDE01C8D4")
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
        .public_key(key.public_key())
        .serial_number(0x87654321)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.AuthorityKeyIdentifier(aki, None, None), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("x.test")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    assert cert_id(cert) == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"


async def test_renewal_window_and_replaces(fake: FakeAcme) -> None:
    issuer = await _issuer(fake, renewal_info=True)
    try:
        old = await issuer.issue(request_for("ari.example.test"))
        window = await issuer.renewal_info(old.certificate)
        assert window.start == dt.datetime(2026, 12, 2, 16, tzinfo=dt.UTC)
        assert window.end == dt.datetime(2026, 12, 2, 18, tzinfo=dt.UTC)
        assert window.retry_after == 21600
        renewal = attrs.evolve(request_for("ari.example.test"), replaces=old.certificate)
        await issuer.issue(renewal)
        orders = [p for path, p, _ in fake.payloads if path == "/order"]
        assert "replaces" not in orders[0]
        assert orders[1]["replaces"] == cert_id(old.certificate)
    finally:
        await issuer.close()


async def test_renewal_info_on_a_ca_without_ari_is_unsupported(fake: FakeAcme) -> None:
    fake.ari = False
    issuer = await _issuer(fake, renewal_info=True)
    try:
        old = await issuer.issue(request_for("ari.example.test"))
        with pytest.raises(UnsupportedCapabilityError, match="renewal_info"):
            await issuer.renewal_info(old.certificate)
        off = await _issuer(fake)  # the default: not declared
        assert "renewal_info" not in off.capabilities.names()
        with pytest.raises(UnsupportedCapabilityError):
            await off.renewal_info(old.certificate)
        await off.close()
    finally:
        await issuer.close()


async def test_a_second_replacement_is_refused(fake: FakeAcme) -> None:
    issuer = await _issuer(fake)
    try:
        old = await issuer.issue(request_for("ari.example.test"))
        conflict = RECORDED["replaces_conflict"]
        fake.scripted["/order"] = [(conflict["status"], {}, conflict["body"])]
        # Recorded from Pebble 2.6: 409 with the type malformed (2.10 says
        # alreadyReplaced, tested for real in test_pebble_newer.py).
        with pytest.raises(InvalidRequestError, match="already has a replacement") as caught:
            await issuer.issue(
                attrs.evolve(request_for("ari.example.test"), replaces=old.certificate)
            )
        assert caught.value.status == 409
    finally:
        await issuer.close()


async def test_profiles_are_listed_and_chosen_per_issuer_or_request(fake: FakeAcme) -> None:
    issuer = await _issuer(fake, profile="default")
    try:
        assert sorted(await issuer.profiles()) == ["default", "shortlived"]
        await issuer.issue(request_for("p.example.test"))
        await issuer.issue(
            attrs.evolve(request_for("p.example.test"), profile=Profile(name="shortlived"))
        )
        await issuer.issue(attrs.evolve(request_for("p.example.test"), profile=Profile(name="web")))
        orders = [p for path, p, _ in fake.payloads if path == "/order"]
        assert [o.get("profile") for o in orders] == ["default", "shortlived", "default"]
    finally:
        await issuer.close()


async def test_an_unknown_profile_is_a_policy_violation(fake: FakeAcme) -> None:
    issuer = await _issuer(fake, profile="nope")
    try:
        with pytest.raises(PolicyViolationError, match="not among"):
            await issuer.issue(request_for("p.example.test"))
        report = await issuer.check()
        assert not report.ok
    finally:
        await issuer.close()
    # A CA that lists it, then refuses it at order time: invalidProfile.
    issuer = await _issuer(fake, profile="shortlived")
    try:
        refused = RECORDED["invalid_profile"]
        fake.scripted["/order"] = [(refused["status"], {}, refused["body"])]
        with pytest.raises(PolicyViolationError, match="invalidProfile"):
            await issuer.issue(request_for("p.example.test"))
    finally:
        await issuer.close()


async def test_bad_nonce_is_retried_once_with_the_fresh_nonce(fake: FakeAcme) -> None:
    bad = RECORDED["bad_nonce"]
    fake.scripted["/account"] = [(bad["status"], {"replay-nonce": "fresh-one"}, bad["body"])]
    issuer = await _issuer(fake)
    try:
        await issuer.account_url()
        tries = [protected for path, _, protected in fake.payloads if path == "/account"]
        assert len(tries) == 2 and tries[1]["nonce"] == "fresh-one"
        # Twice in a row: reported, typed, transient (a nonce problem passes).
        fake.scripted["/order"] = [
            (bad["status"], {}, bad["body"]),
            (bad["status"], {}, bad["body"]),
        ]
        with pytest.raises(CAUnavailableError, match="badNonce") as caught:
            await issuer.issue(request_for("n.example.test"))
        assert caught.value.retry_after is not None
    finally:
        await issuer.close()


async def test_rate_limited_is_transient_with_retry_after(fake: FakeAcme) -> None:
    limited = RECORDED["rate_limited"]
    fake.scripted["/order"] = [
        (limited["status"], {"retry-after": limited["retry_after"]}, limited["body"])
    ]
    issuer = await _issuer(fake)
    try:
        with pytest.raises(CAUnavailableError, match="rateLimited") as caught:
            await issuer.issue(request_for("r.example.test"))
        assert caught.value.retry_after == 3600
    finally:
        await issuer.close()


async def test_polling_honours_retry_after(fake: FakeAcme, monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    import asyncio

    real_sleep = asyncio.sleep

    async def record(seconds: float) -> None:
        slept.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr("certctl_acme.connector.asyncio.sleep", record)
    fake.scripted["/finalize/1"] = [(200, {"retry-after": "3"}, {"status": "processing"})]
    issuer = await _issuer(fake)
    try:
        await issuer.issue(request_for("poll.example.test"))
    finally:
        await issuer.close()
    assert slept == [3.0]


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, content=b"<html>not json</html>"),
        httpx.Response(200, json=["a", "list"]),
        httpx.Response(200, json={"newNonce": 5}),
    ],
    ids=["html", "list", "no-links"],
)
async def test_a_broken_directory_is_an_invalid_response(answer: httpx.Response) -> None:
    issuer = await build_acme_issuer(
        "recorded",
        {"directory_url": f"{BASE}/dir"},
        transport=httpx.MockTransport(lambda _r: answer),
    )
    try:
        with pytest.raises(InvalidResponseError):
            await issuer.issue(request_for("x.example.test"))
    finally:
        await issuer.close()
