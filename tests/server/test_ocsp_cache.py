"""Pre-signed OCSP answers (ADR 0026): what is cached, for how long, and that a revocation
through the API is answered at once, on the lean path and over the real server."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import secrets
import sqlite3
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from certctl_core import Capabilities, RevocationReason
from certctl_core.revocation import build_ocsp_request, ocsp_error_response
from certctl_host.server._ocsp_cache import OCSPCache, has_nonce
from certctl_host.server._ocsp_fast import answer
from certctl_host.server._service import IssuerService
from certctl_localca import build_localca_issuer
from tests.server.conftest import LOCALCA_PASSWORD, Server, issue, localca_body, openssl
from tests.server.pki import OCSPCase, ocsp_url, status_line

# -- the cache alone ---------------------------------------------------------------------


def _ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cache test CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert, key


CA, CA_KEY = _ca()


def _answer(serial: int, *, validity: int = 3600, nonce: bytes | None = None) -> bytes:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            issuer_name_hash=b"\x01" * 20,
            issuer_key_hash=b"\x02" * 20,
            serial_number=serial,
            algorithm=hashes.SHA1(),
            cert_status=ocsp.OCSPCertStatus.GOOD,
            this_update=now,
            next_update=now + dt.timedelta(seconds=validity),
            revocation_time=None,
            revocation_reason=None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, CA)
    )
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.sign(CA_KEY, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC).timestamp()

    def __call__(self) -> float:
        return self.now


def test_cache_keeps_an_answer_until_its_serial_is_invalidated() -> None:
    cache = OCSPCache()
    der = _answer(7)
    kept = cache.put("ca", b"k7", der, cache.epoch("ca"))
    assert kept is not None and kept.serial == 7
    other = cache.put("ca", b"k8", _answer(8), cache.epoch("ca"))
    assert other is not None
    hit = cache.get("ca", b"k7")
    assert hit is not None and hit.der == der
    assert hit.etag.startswith('"') and "max-age=" in hit.headers(kept.fresh_until)["Cache-Control"]
    cache.invalidate("ca", 7)
    assert cache.get("ca", b"k7") is None
    assert cache.get("ca", b"k8") is not None  # another serial stays
    cache.invalidate("ca")
    assert cache.get("ca", b"k8") is None
    assert len(cache) == 0


def test_answer_computed_across_an_invalidation_is_not_kept() -> None:
    cache = OCSPCache()
    epoch = cache.epoch("ca")  # read before the status lookup ...
    cache.invalidate("ca", 7)  # ... a revocation runs meanwhile ...
    facts = cache.put("ca", b"k7", _answer(7), epoch)  # ... the stale answer comes back
    assert facts is not None  # served once (it was current when computed)
    assert cache.get("ca", b"k7") is None  # but never again


def test_answers_expire_after_half_their_validity() -> None:
    clock = Clock()
    cache = OCSPCache(clock=clock)
    assert cache.put("ca", b"k", _answer(1, validity=600), 0) is not None
    clock.now += 290
    assert cache.get("ca", b"k") is not None
    clock.now += 20
    assert cache.get("ca", b"k") is None


def test_nonce_error_and_garbage_answers_are_not_cached() -> None:
    cache = OCSPCache()
    assert cache.put("ca", b"n", _answer(1, nonce=b"0123456789abcdef"), 0) is None
    assert cache.put("ca", b"e", ocsp_error_response("try_later"), 0) is None
    assert cache.put("ca", b"g", b"\x30\x03garbage", 0) is None
    assert len(cache) == 0


def test_cache_holds_at_most_max_entries_oldest_dropped() -> None:
    cache = OCSPCache(max_entries=2)
    for serial in (1, 2, 3):
        cache.put("ca", b"k%d" % serial, _answer(serial), 0)
    assert cache.get("ca", b"k1") is None
    assert cache.get("ca", b"k3") is not None
    cache.invalidate("ca", 1)  # its index entry went with it: nothing to trip on
    assert len(cache) == 2


def test_has_nonce_spots_the_nonce_extension() -> None:
    assert has_nonce(build_ocsp_request(CA, 5, nonce=secrets.token_bytes(16)))
    assert not has_nonce(build_ocsp_request(CA, 5))


# -- over the real server ----------------------------------------------------------------


@pytest.fixture
def local(server: Server, tmp_path: Path) -> tuple[Server, Path]:
    state = tmp_path / "state"
    assert server.put("ca1", localca_body(state)).status_code == 201
    return server, state


def _post(server: Server, der: bytes) -> httpx.Response:
    response = httpx.post(
        ocsp_url(server, "ca1"),
        content=der,
        headers={"content-type": "application/ocsp-request"},
        trust_env=False,
    )
    assert response.status_code == 200
    return response


def _status(body: bytes) -> ocsp.OCSPCertStatus:
    parsed = ocsp.load_der_ocsp_response(body)
    assert parsed.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    return parsed.certificate_status


def test_revocation_is_answered_at_once_after_cached_good(
    local: tuple[Server, Path], tmp_path: Path
) -> None:
    server, state = local
    issued = issue(server, "ca1", "cached.example.test")
    chain = x509.load_pem_x509_certificates(issued["chain"].encode())
    serial = int(issued["serial"], 16)
    request = build_ocsp_request(chain[1], serial)
    by_serial = f"{ocsp_url(server, 'ca1')}/{issued['serial']}"

    # Warm: the nonce-less answers are pre-signed and served again byte for byte.
    first = _post(server, request).content
    assert _post(server, request).content == first
    got = httpx.get(by_serial, trust_env=False)
    again = httpx.get(by_serial, trust_env=False)
    assert again.content == got.content and _status(got.content) is ocsp.OCSPCertStatus.GOOD
    etag = got.headers["etag"]
    assert "max-age=" in got.headers["cache-control"]
    revalidated = httpx.get(by_serial, headers={"If-None-Match": etag}, trust_env=False)
    assert revalidated.status_code == 304 and revalidated.headers["etag"] == etag
    # With a nonce: signed for this request, nonce echoed, never from the cache.
    nonce = secrets.token_bytes(16)
    fresh = ocsp.load_der_ocsp_response(
        _post(server, build_ocsp_request(chain[1], serial, nonce=nonce)).content
    )
    assert [e.value.nonce for e in fresh.extensions] == [nonce]

    with server.client() as client:
        revoked = client.post(
            "/api/v1/issuers/ca1/revocations",
            json={"serial": "0x" + issued["serial"], "reason": "keyCompromise"},
        )
    assert revoked.status_code == 201
    # The very next requests, every form, say revoked: no cached "good" survives.
    assert _status(_post(server, request).content) is ocsp.OCSPCertStatus.REVOKED
    after = httpx.get(by_serial, headers={"If-None-Match": etag}, trust_env=False)
    assert after.status_code == 200 and after.headers["etag"] != etag
    assert _status(after.content) is ocsp.OCSPCertStatus.REVOKED
    # And openssl, through the GET form (no nonce: the cacheable one), verifies it.
    case = OCSPCase(tmp_path / "case", issued["certificate"], chain[1], state / "root.pem")
    _, output = case.get(ocsp_url(server, "ca1"))
    assert "Response verify OK" in output, output
    assert status_line(output, case.leaf) == "revoked"
    assert "Reason: keyCompromise" in output


def test_ocsp_rate_limit_holds_on_the_lean_path(tmp_path: Path) -> None:
    server = Server(tmp_path, rate_limit_per_second=0.01, rate_limit_burst=3)
    server.start()
    try:
        assert server.put("ca1", localca_body(tmp_path / "state")).status_code == 201
        issued = issue(server, "ca1")
        chain = x509.load_pem_x509_certificates(issued["chain"].encode())
        request = build_ocsp_request(chain[1], int(issued["serial"], 16))
        url = ocsp_url(server, "ca1")
        headers = {"content-type": "application/ocsp-request"}
        statuses = [
            httpx.post(url, content=request, headers=headers, trust_env=False).status_code,
            httpx.get(f"{url}/{issued['serial']}", trust_env=False).status_code,
            httpx.post(url, content=request, headers=headers, trust_env=False).status_code,
        ]
        refused = httpx.post(url, content=request, headers=headers, trust_env=False)
        refused_get = httpx.get(f"{url}/{issued['serial']}", trust_env=False)
    finally:
        server.stop()
    assert statuses == [200, 200, 200]
    assert refused.status_code == 429 and refused_get.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["retry-after"]) >= 1


def test_openssl_verifies_cached_answers(local: tuple[Server, Path], tmp_path: Path) -> None:
    server, state = local
    issued = issue(server, "ca1", "verify.example.test")
    chain = x509.load_pem_x509_certificates(issued["chain"].encode())
    case = OCSPCase(tmp_path / "v", issued["certificate"], chain[1], state / "root.pem")
    for _ in range(2):  # the second answer is the pre-signed one
        _, output = case.get(ocsp_url(server, "ca1"))
        assert "Response verify OK" in output, output
        assert status_line(output, case.leaf) == "good"
    assert openssl(["version"]).returncode == 0


def test_local_ca_revocation_behind_the_servers_back_is_answered_at_once(
    local: tuple[Server, Path],
) -> None:
    """``certctl revoke`` on the Local CA's state directory while the server serves it
    writes the CA's own ledger, not the server's store: the cached "good" must still go."""
    server, state = local
    issued = issue(server, "ca1", "behind.example.test")
    by_serial = f"{ocsp_url(server, 'ca1')}/{issued['serial']}"
    first = httpx.get(by_serial, trust_env=False)
    assert httpx.get(by_serial, trust_env=False).content == first.content  # cached
    assert _status(first.content) is ocsp.OCSPCertStatus.GOOD

    async def revoke_directly() -> None:
        ca = await build_localca_issuer(
            "cli", {"state_dir": str(state), "key_password": LOCALCA_PASSWORD}
        )
        try:
            await ca.revoke(int(issued["serial"], 16), RevocationReason.KEY_COMPROMISE)
        finally:
            await ca.close()

    asyncio.run(revoke_directly())
    after = httpx.get(by_serial, trust_env=False)
    assert _status(after.content) is ocsp.OCSPCertStatus.REVOKED


# -- revocations written by another process -------------------------------------------


class _Delegated:
    """A connector without OCSP or a CRL of its own: its answers come from the store."""

    capabilities = Capabilities()


class _Registry:
    @contextlib.asynccontextmanager
    async def lease(self, issuer_id: str) -> AsyncIterator[_Delegated]:
        yield _Delegated()


@pytest.mark.anyio
async def test_an_answer_read_before_another_process_revoked_is_never_served_after(
    tmp_path: Path,
) -> None:
    """A request reads "good", a CLI revocation commits to the store, a later request for
    another serial fills the empty cache, and only then is the first answer kept: it must
    not be served afterwards (each answer carries the store state it was read at)."""
    path = tmp_path / "certctl.sqlite3"
    server = sqlite3.connect(path, isolation_level=None)
    server.execute("PRAGMA journal_mode=WAL")
    server.execute("CREATE TABLE ledger (serial INTEGER PRIMARY KEY, revoked INTEGER)")
    server.execute("INSERT INTO ledger VALUES (7, 0), (8, 0)")
    cli = sqlite3.connect(path, isolation_level=None)
    service: Any = types.SimpleNamespace(
        ocsp_cache=OCSPCache(),
        store=types.SimpleNamespace(path=path),
        issue_guard=None,
        shared_store=False,
        registry=_Registry(),
    )
    service.store_token = lambda: IssuerService.store_token(service)
    service._replica_current = lambda: True
    service.ocsp_answer_current = lambda i, a: IssuerService.ocsp_answer_current(service, i, a)

    def revoked(serial: int) -> bool:
        row = server.execute("SELECT revoked FROM ledger WHERE serial = ?", (serial,))
        return bool(row.fetchone()[0])

    read, resume = asyncio.Event(), asyncio.Event()

    async def slow_good() -> bytes:
        assert not revoked(7)
        read.set()
        await resume.wait()  # a slow signer or CRL fetch
        return _answer(7)

    async def other() -> bytes:
        return _answer(8)

    first = asyncio.create_task(
        answer(service, "ca", b"S7", slow_good, nonce=False, http_cacheable=True)
    )
    await read.wait()
    cli.execute("UPDATE ledger SET revoked = 1 WHERE serial = 7")
    await answer(service, "ca", b"S8", other, nonce=False, http_cacheable=True)
    resume.set()
    await first
    recomputed = []

    async def fresh() -> bytes:
        recomputed.append(7)
        return ocsp_error_response("try_later")

    await answer(service, "ca", b"S7", fresh, nonce=False, http_cacheable=True)
    assert recomputed == [7], "the answer read before the revocation was served"
    server.close()
    cli.close()
