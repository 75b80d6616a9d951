"""The connector's own HTTP/1.1 transport (asyncio TLS + h11) against a real step-ca.

Connections are kept alive and reused, never more than ``max_connections`` are open, a
connection the CA dropped is not reused, a CA that stops answering times out, and an
answer above the size bound is refused and its connection discarded (ADR 0016).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from certctl_core import CATimeoutError
from certctl_stepca import build_stepca_issuer
from certctl_stepca._http import _StreamPool, _tls12_certificates, _TooLargeError
from certctl_stepca.config import StepCAConfig
from certctl_stepca.testing import FaultProxy, StepCA, make_provisioner_key, provisioner_entry
from certctl_stepca.testing._proxy import _serve_certificate
from tests.csr import make_request
from tests.stepca.conftest import CA, BuildIssuer

pytestmark = [pytest.mark.anyio, pytest.mark.stepca]


async def test_one_connection_serves_every_call_when_issuing_one_after_another(
    make_issuer: BuildIssuer, proxy: FaultProxy
) -> None:
    issuer = await make_issuer(ca_url=proxy.url)
    for i in range(5):
        await issuer.issue(make_request(cn=f"k{i}.example.test", dns=[f"k{i}.example.test"]))
    # The provisioner lookup and five signs, one kept-alive connection.
    assert proxy.accepted_connections == 1
    assert len(proxy.jtis("/1.0/sign")) == 5
    await issuer.close()
    assert await asyncio.to_thread(proxy.wait_idle, 5.0)


async def test_open_connections_stay_within_max_connections_when_many_tasks_issue(
    make_issuer: BuildIssuer, proxy: FaultProxy
) -> None:
    issuer = await make_issuer(ca_url=proxy.url, max_connections=2)
    names = [f"c{i}.example.test" for i in range(12)]
    issued = await asyncio.gather(*(issuer.issue(make_request(cn=n, dns=[n])) for n in names))
    assert sorted(c.sans.dns[0] for c in issued) == sorted(names)
    assert proxy.peak_connections <= 2
    await issuer.close()
    assert await asyncio.to_thread(proxy.wait_idle, 5.0)


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
    tmp_path: Path,
) -> None:
    with (
        _own_ca(tmp_path, "restart") as (process, config),
        FaultProxy.for_stepca(process, tmp_path / "proxy") as proxy,
    ):
        issuer = await build_stepca_issuer("restart", {**config, "ca_url": proxy.url}, env={})
        try:
            await issuer.issue(make_request())
            await asyncio.to_thread(process.restart)
            await asyncio.sleep(0.05)  # let the loop see the closed connection
            assert (await issuer.issue(make_request())).serial > 0  # no retry allowed
        finally:
            await issuer.close()
        assert proxy.accepted_connections == 2
        assert [r.upstream_status for r in proxy.requests if r.path == "/1.0/sign"] == [201, 201]


async def test_answer_above_the_bound_is_refused_and_its_connection_dropped(stepca: CA) -> None:
    config = StepCAConfig.from_mapping(stepca.config(), env={}, issuer_id="bound")
    context = ssl.create_default_context(cafile=str(stepca.process.root_file))
    body = json.dumps({"csr": "not a csr", "ott": "not a token"}).encode()
    headers = [(b"Content-Type", b"application/json")]
    # Below the smallest max_response_bytes the config accepts: step-ca's error is ~200 bytes.
    small = _StreamPool(attrs.evolve(config, max_response_bytes=32), context)
    roomy = _StreamPool(config, context)
    try:
        answer = await roomy.send("POST", "/1.0/sign", headers, lambda: body)
        assert answer.status == 400  # step-ca's error document, well under the bound
        assert len(answer.body) > 32
        with pytest.raises(_TooLargeError):
            await small.send("POST", "/1.0/sign", headers, lambda: body)
        assert not small._idle  # the half-read connection was aborted, not pooled
        assert roomy._idle  # while a whole answer leaves its connection for reuse
    finally:
        await small.aclose()
        await roomy.aclose()


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


async def test_ca_chain_before_any_issuance_is_the_tls_intermediate_then_the_root(
    make_issuer: BuildIssuer, stepca: CA
) -> None:
    pki = stepca.process.pki
    issuer = await make_issuer()
    assert await issuer.ca_chain() == (pki.intermediate_cert, pki.root_cert)


async def test_ca_that_refuses_tls_1_2_gives_the_root_alone_until_the_first_issuance(
    make_issuer: BuildIssuer, stepca: CA, tmp_path: Path
) -> None:
    pki = stepca.process.pki
    cert, key = _serve_certificate(pki, tmp_path / "tls13")
    tls13_only = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls13_only.load_cert_chain(cert, key)
    tls13_only.minimum_version = ssl.TLSVersion.TLSv1_3
    upstream = stepca.process.ssl_context()
    proxy = FaultProxy(
        "127.0.0.1", stepca.process.port, upstream_ssl=upstream, server_ssl=tls13_only
    )
    with proxy:
        issuer = await make_issuer(ca_url=proxy.url)
        chain = await issuer.ca_chain()
        if hasattr(ssl.SSLObject, "get_verified_chain"):  # Python 3.13: the public chain
            assert chain == (pki.intermediate_cert, pki.root_cert)
        else:
            assert chain == (pki.root_cert,)
        await issuer.issue(make_request())
        assert await issuer.ca_chain() == (pki.intermediate_cert, pki.root_cert)


def test_tls_records_that_are_not_a_certificate_message_give_no_certificates() -> None:
    assert _tls12_certificates(b"") == []
    assert _tls12_certificates(b"garbage that is not TLS") == []
    handshake_without_certificate = b"\x16\x03\x03\x00\x04" + b"\x02\x00\x00\x00"
    assert _tls12_certificates(handshake_without_certificate) == []
    for seed in range(200):  # truncated and random input never raises
        noise = random.Random(seed).randbytes(seed)
        _tls12_certificates(b"\x16\x03\x03" + noise)


def test_the_adapter_imports_neither_httpx_nor_sniffio() -> None:
    probe = (
        "import sys, certctl_stepca.plugin, certctl_stepca.connector; "
        "print(sorted({'httpx', 'httpcore', 'sniffio', 'anyio'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
