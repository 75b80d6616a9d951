"""The reference server under load, hostile input and scrutiny (issue 9, phase 2).

Extends tests/server (which covers the basic 401s, the rate limit, schemathesis and one
hot swap): 20 provisioner rotations through ``PUT /api/v1/issuers/{id}`` under 8
concurrent clients, structured fuzzing of the API bodies and of DER OCSP requests over
HTTP, hostile ``Authorization`` headers, a rate limit that ``X-Forwarded-For`` does not
get around, and secret hygiene over the server's own log and every response.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psutil
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certctl_core.revocation.ocsp import issuer_hashes
from certctl_stepca.testing import (
    FaultProxy,
    ProvisionerKey,
    StepCA,
    make_provisioner_key,
    provisioner_entry,
)
from tests.reliability.hostile import seed_csr_der
from tests.reliability.test_hostile_input import EXAMPLES, json_values, mutated
from tests.server.conftest import TOKEN, Server, make_csr

pytestmark = [pytest.mark.stepca]

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
LOCAL_PASSWORD = "server fuzz local CA password"
PROBLEM = "application/problem+json"
JSON = "application/json"
STEP_PROVISIONER_OID = x509.ObjectIdentifier("1.3.6.1.4.1.37476.9000.64.1")


def send_json(client: httpx.Client, method: str, path: str, body: Any) -> httpx.Response:
    """``body`` as JSON, NaN and Infinity included (Python's json accepts them back)."""
    content = json.dumps(body)
    return client.request(method, path, content=content, headers={"Content-Type": JSON})


def assert_no_5xx(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    assert "Traceback" not in response.text
    if response.status_code >= 400:
        assert response.headers["content-type"] == PROBLEM


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    """A server with one Local CA issuer ("local") and no practical rate limit."""
    directory = tmp_path_factory.mktemp("fuzz-server")
    server = Server(directory, rate_limit_per_second=1e6, rate_limit_burst=10**7)
    server.start()
    body = {
        "type": "localca",
        "config": {"state_dir": str(directory / "local"), "key_password": LOCAL_PASSWORD},
    }
    assert server.put("local", body).status_code == 201
    try:
        yield server, directory
    finally:
        server.stop()


# -- hostile Authorization headers ------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        b"Bearer",
        b"Bearer " + TOKEN.encode() + b" extra",
        b"Bearer\t" + TOKEN.encode()[:-1],
        b"Token " + TOKEN.encode(),
        b"Bearer " + "tökén-ünïcode-long-enough".encode(),
        b"Bearer " + b"\xff\xfe" * 20,
        b"Bearer " + b"A" * 7000,
    ],
    ids=["no-token", "extra", "tab-truncated", "scheme", "unicode", "binary", "7k"],
)
def test_hostile_authorization_headers_get_401_not_5xx(
    fuzz_server: tuple[Server, Path], header: bytes
) -> None:
    server, _ = fuzz_server
    with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as client:
        response = client.get("/api/v1/issuers", headers=[(b"Authorization", header)])
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert TOKEN not in response.text


def test_two_authorization_headers_do_not_smuggle_a_wrong_token(
    fuzz_server: tuple[Server, Path],
) -> None:
    server, _ = fuzz_server
    headers = [
        (b"Authorization", b"Bearer wrong-token-long-enough"),
        (b"Authorization", b"Bearer " + TOKEN.encode()),
    ]
    with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as client:
        response = client.get("/api/v1/issuers", headers=headers)
    assert response.status_code in (400, 401)


def test_x_forwarded_for_does_not_get_around_the_rate_limit(tmp_path: Path) -> None:
    server = Server(tmp_path, rate_limit_per_second=0.5, rate_limit_burst=3)
    server.start()
    try:
        statuses = []
        with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as client:
            for n in range(12):
                response = client.get(
                    "/.well-known/pki/crl/none",
                    headers={"X-Forwarded-For": f"198.51.100.{n}", "X-Real-IP": f"203.0.113.{n}"},
                )
                statuses.append(response.status_code)
                if response.status_code == 429:
                    assert int(response.headers["retry-after"]) >= 1
    finally:
        server.stop()
    assert statuses.count(429) >= 12 - 3 - 6  # burst 3; 0.5/s refills at most a few
    assert set(statuses) <= {404, 429}


# -- API bodies --------------------------------------------------------------------------------

ids = (st.sampled_from(["local", "nobody"]) | st.text(max_size=80)).filter(
    lambda text: text not in (".", "..")
)
bodies = (
    st.dictionaries(
        st.sampled_from(["csr", "profile", "validity_seconds", "serial", "reason"])
        | st.text(max_size=10),
        json_values,
        max_size=5,
    )
    | json_values
)


@FUZZ
@given(issuer=ids, body=bodies, action=st.sampled_from(["certificates", "revocations"]))
def test_api_post_bodies_of_anything_get_no_5xx(
    fuzz_server: tuple[Server, Path], issuer: str, body: Any, action: str
) -> None:
    server, _ = fuzz_server
    with server.client() as client:
        path = f"/api/v1/issuers/{quote(issuer, safe='')}/{action}"
        response = send_json(client, "POST", path, body)
    assert_no_5xx(response)


@FUZZ
@given(
    raw=st.binary(max_size=2048),
    content_type=st.sampled_from(
        ["application/json", "text/plain", "application/json; charset=latin-1", ""]
    ),
)
def test_api_raw_bodies_of_anything_get_no_5xx(
    fuzz_server: tuple[Server, Path], raw: bytes, content_type: str
) -> None:
    server, _ = fuzz_server
    with server.client() as client:
        for method, path in (
            ("POST", "/api/v1/issuers/local/certificates"),
            ("POST", "/api/v1/issuers/local/revocations"),
            ("PUT", "/api/v1/issuers/fuzz-raw"),
        ):
            response = client.request(
                method, path, content=raw, headers={"Content-Type": content_type}
            )
            assert_no_5xx(response)


@FUZZ
@given(
    kind=st.sampled_from(["localca", "stepca"]) | st.text(max_size=12),
    config=st.dictionaries(
        st.sampled_from(
            [
                "ca_url",
                "provisioner_name",
                "provisioner_password",
                "root_fingerprint",
                "key_password",
                "validity_days",
                "ocsp_validity_hours",
                "crl_url",
                "profiles",
                "max_retries",
            ]
        )
        | st.text(max_size=12),
        json_values,
        max_size=6,
    ),
    extra=st.dictionaries(
        st.sampled_from(["ocsp_responder", "labels"]) | st.text(max_size=8), json_values, max_size=2
    ),
)
def test_api_put_bodies_of_anything_get_no_5xx(
    fuzz_server: tuple[Server, Path], kind: str, config: dict[str, Any], extra: dict[str, Any]
) -> None:
    # No file system paths are generated: a PUT that validates would create state there.
    server, _ = fuzz_server
    with server.client() as client:
        response = send_json(
            client, "PUT", "/api/v1/issuers/fuzz-put", {"type": kind, "config": config, **extra}
        )
    assert_no_5xx(response)


CSR_SEED = seed_csr_der()


@FUZZ
@given(
    csr=mutated(CSR_SEED),
    profile=st.sampled_from(["web", "default", "tls-client"]) | json_values,
    validity=st.integers(-(2**70), 2**70) | json_values,
)
def test_api_mutated_csrs_get_no_5xx(
    fuzz_server: tuple[Server, Path], csr: bytes, profile: Any, validity: Any
) -> None:
    server, _ = fuzz_server
    body = base64.encodebytes(csr).decode()
    pem = f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"
    request = {"csr": pem, "profile": profile, "validity_seconds": validity}
    with server.client() as client:
        response = send_json(client, "POST", "/api/v1/issuers/local/certificates", request)
    assert_no_5xx(response)


# -- OCSP over HTTP --------------------------------------------------------------------------


def _local_issuing_ca(server: Server) -> x509.Certificate:
    pem, _ = make_csr("seed.example.test")
    with server.client() as client:
        issued = client.post("/api/v1/issuers/local/certificates", json={"csr": pem}).json()
    chain = x509.load_pem_x509_certificates(issued["chain"].encode())
    return chain[1]


@pytest.fixture(scope="module")
def ocsp_seed(fuzz_server: tuple[Server, Path]) -> bytes:
    server, _ = fuzz_server
    issuing = _local_issuing_ca(server)
    name_hash, key_hash = issuer_hashes(issuing)["sha256"]
    request = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        name_hash, key_hash, 0x1234, hashes.SHA256()
    )
    return request.build().public_bytes(serialization.Encoding.DER)


def assert_ocsp_answer(response: httpx.Response) -> None:
    assert response.status_code in (200, 413), response.text
    if response.status_code == 200:
        assert response.headers["content-type"] == "application/ocsp-response"
        ocsp.load_der_ocsp_response(response.content)  # always a parseable OCSP response


@FUZZ
@given(data=st.data())
def test_ocsp_post_of_anything_is_an_ocsp_response(
    fuzz_server: tuple[Server, Path], ocsp_seed: bytes, data: st.DataObject
) -> None:
    server, _ = fuzz_server
    body = data.draw(mutated(ocsp_seed) | st.binary(max_size=512))
    with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as client:
        response = client.post(
            "/.well-known/pki/ocsp/local",
            content=body,
            headers={"Content-Type": "application/ocsp-request"},
        )
    assert_ocsp_answer(response)


@FUZZ
@given(data=st.data())
def test_ocsp_get_of_anything_is_an_ocsp_response(
    fuzz_server: tuple[Server, Path], ocsp_seed: bytes, data: st.DataObject
) -> None:
    server, _ = fuzz_server
    body = data.draw(mutated(ocsp_seed) | st.binary(max_size=256))
    segment = data.draw(
        st.just(base64.b64encode(body).decode().replace("/", "%2F").replace("+", "%2B"))
        | st.just(base64.urlsafe_b64encode(body).decode())
        | st.text(alphabet="0123456789abcdefABCDEF:x", max_size=90)
        | st.text(max_size=60)
        .map(lambda t: quote(t, safe=""))
        .filter(lambda t: t not in (".", ".."))
    )
    with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as client:
        response = client.get(f"/.well-known/pki/ocsp/local/{segment}")
    assert_ocsp_answer(response)  # every problem with the request is an OCSP status


# -- rotation under load through the API --------------------------------------------------------

ROTATIONS = 20
WORKERS = 8


def provisioner_of(pem: str) -> str:
    cert = x509.load_pem_x509_certificate(pem.encode())
    value = cert.extensions.get_extension_for_oid(STEP_PROVISIONER_OID).value
    assert isinstance(value, x509.UnrecognizedExtension)
    for index in range(ROTATIONS, -1, -1):
        if f"api-r{index}".encode() in value.value:
            return f"api-r{index}"
    raise AssertionError("unknown provisioner")


@pytest.mark.anyio
async def test_twenty_rotations_through_put_under_eight_clients_fail_nothing(
    tmp_path: Path,
) -> None:
    keys = [make_provisioner_key(f"api-r{i}", f"api password {i}") for i in range(ROTATIONS + 1)]
    ca = StepCA.create(tmp_path / "ca", provisioners=[provisioner_entry(keys[0])])
    await asyncio.to_thread(ca.start)
    proxy = FaultProxy.for_stepca(ca, tmp_path / "proxy")
    proxy.start()
    (tmp_path / "server").mkdir()
    server = Server(tmp_path / "server")
    await asyncio.to_thread(server.start)

    def body(key: ProvisionerKey, index: int) -> dict[str, Any]:
        return {
            "type": "stepca",
            "config": {
                "ca_url": proxy.url,
                "provisioner_name": key.name,
                "provisioner_key_path": str(key.write_key_file(tmp_path / f"{key.name}.json")),
                "provisioner_password": f"api password {index}",
                "root_cert_path": str(ca.root_file),
            },
        }

    failures: list[str] = []
    served: Counter[str] = Counter()
    started_after: list[set[int]] = [set()]  # workers that began a call after the last PUT
    stop = asyncio.Event()
    progress = asyncio.Condition()

    async def worker(number: int, client: httpx.AsyncClient) -> None:
        while not stop.is_set():
            started_after[-1].add(number)
            pem, _ = make_csr(f"w{number}.rotation.example.test")
            response = await client.post("/api/v1/issuers/step/certificates", json={"csr": pem})
            if response.status_code != 201:
                failures.append(f"{response.status_code} {response.text[:300]}")
            else:
                served[provisioner_of(response.json()["certificate"])] += 1
            async with progress:
                progress.notify_all()

    async def wait_for(predicate: Any) -> None:
        async with progress:
            await progress.wait_for(predicate)

    try:
        put = await asyncio.to_thread(server.put, "step", body(keys[0], 0))
        assert put.status_code == 201, put.text
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(
            base_url=server.url, headers=headers, timeout=60, trust_env=False
        ) as client:
            workers = [asyncio.create_task(worker(n, client)) for n in range(WORKERS)]
            try:
                for index in range(1, ROTATIONS + 1):
                    old, new = keys[index - 1], keys[index]
                    await wait_for(lambda name=old.name: served[name] >= WORKERS)
                    await asyncio.to_thread(ca.add_provisioner, provisioner_entry(new))
                    put = await asyncio.to_thread(server.put, "step", body(new, index))
                    assert put.status_code == 200, put.text
                    # Each worker runs one call at a time: once all have begun a call after
                    # the PUT, no call that could still use the old key is in flight.
                    started_after.append(set())
                    await wait_for(lambda: len(started_after[-1]) == WORKERS)
                    await asyncio.to_thread(ca.remove_provisioner, old.name)
                await wait_for(lambda: served[keys[-1].name] >= WORKERS)
            finally:
                stop.set()
                await asyncio.gather(*workers)
    finally:
        await asyncio.to_thread(server.stop)
        proxy.stop()
        await asyncio.to_thread(ca.stop)

    statuses = Counter(r.upstream_status for r in proxy.requests if r.path == "/1.0/sign")
    jtis = proxy.jtis("/1.0/sign")
    print(  # figures for docs/reliability.md (pytest -s)
        f"rotation through the API: {sum(served.values())} issuances, {ROTATIONS} PUTs, "
        f"{2 * ROTATIONS} reloads, {sum(statuses.values())} sign requests, statuses "
        f"{dict(statuses)}"
    )
    assert failures == []
    assert set(served) == {k.name for k in keys}
    assert len(jtis) == len(set(jtis))


# -- secret hygiene, server included ----------------------------------------------------------


@pytest.mark.anyio
async def test_server_log_and_responses_carry_no_secret(tmp_path: Path) -> None:
    old = make_provisioner_key("hyg-old", "server hygiene old password")
    new = make_provisioner_key("hyg-new", "server hygiene new password")
    ca = StepCA.create(tmp_path / "ca", provisioners=[provisioner_entry(old)])
    await asyncio.to_thread(ca.start)
    proxy = FaultProxy.for_stepca(ca, tmp_path / "proxy")
    proxy.start()
    (tmp_path / "server").mkdir()
    server = Server(tmp_path / "server")  # log_level debug
    await asyncio.to_thread(server.start)
    answers: list[httpx.Response] = []

    def body(key: ProvisionerKey, password: str) -> dict[str, Any]:
        return {
            "type": "stepca",
            "config": {
                "ca_url": proxy.url,
                "provisioner_name": key.name,
                "provisioner_key_path": str(key.write_key_file(tmp_path / f"{key.name}.json")),
                "provisioner_password": password,
                "root_cert_path": str(ca.root_file),
                "max_retries": 1,
                "timeout_seconds": 1,
            },
        }

    def cycle() -> None:
        with server.client() as client:
            answers.append(client.put("/api/v1/issuers/corp", json=body(old, old.password)))
            pem, _ = make_csr("hygiene.example.test")
            issued = client.post("/api/v1/issuers/corp/certificates", json={"csr": pem})
            answers.append(issued)
            serial = issued.json()["serial"]
            answers.append(
                client.post("/api/v1/issuers/corp/revocations", json={"serial": f"0x{serial}"})
            )
            ca.add_provisioner(provisioner_entry(new))
            answers.append(client.put("/api/v1/issuers/corp", json=body(new, new.password)))
            ca.remove_provisioner(old.name)
            answers.append(client.post("/api/v1/issuers/corp/certificates", json={"csr": pem}))
            # failures that quote the config back: a wrong password, a removed provisioner
            answers.append(client.put("/api/v1/issuers/corp", json=body(new, "wrong password")))
            answers.append(client.put("/api/v1/issuers/stale", json=body(old, old.password)))
            answers.append(client.post("/api/v1/issuers/stale/certificates", json={"csr": pem}))
            # read everything back
            for path in ("/api/v1/issuers", "/api/v1/issuers/corp", "/api/v1/plugins"):
                answers.append(client.get(path))
        with server.client(token="wrong-token-but-long-enough") as client:
            answers.append(client.get("/api/v1/issuers"))

    try:
        await asyncio.to_thread(cycle)
    finally:
        await asyncio.to_thread(server.stop)
        proxy.stop()
        await asyncio.to_thread(ca.stop)

    statuses = [a.status_code for a in answers]
    assert statuses[:5] == [201, 201, 201, 200, 201], statuses
    assert statuses[5] == 422 and statuses[7] == 502, statuses  # wrong password; stale key
    wire_tokens = [r.token for r in proxy.requests if r.token]
    assert len(wire_tokens) >= 4
    log = server.log_text() + server.access_log()
    assert " DEBUG " in log
    assert "POST /api/v1/issuers/corp/certificates" in log  # the access log was captured
    everything = "\n".join([log] + [f"{a.status_code} {dict(a.headers)} {a.text}" for a in answers])
    secrets = [
        TOKEN,
        old.password,
        new.password,
        json.loads(old.private_jwk_json)["d"],
        json.loads(new.private_jwk_json)["d"],
        ca.password,
        *wire_tokens,
        *[t.rsplit(".", 1)[1] for t in wire_tokens],
    ]
    leaked = [s[:6] + "..." for s in secrets if s in everything]
    assert leaked == []


# -- body limits, at their boundaries, and memory ---------------------------------------------


@pytest.fixture(scope="module")
def small_limits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("limits-server")
    server = Server(directory, max_body_bytes=4096, rate_limit_burst=10**6)
    server.start()
    body = {
        "type": "localca",
        "config": {"state_dir": str(directory / "local"), "key_password": LOCAL_PASSWORD},
    }
    assert server.put("local", body).status_code == 201
    try:
        yield server
    finally:
        server.stop()


def _chunks(total: int, size: int = 65536) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        chunk = b" " * min(size, total - sent)
        sent += len(chunk)
        yield chunk


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_api_body_at_the_limit_is_read_and_one_byte_more_is_413(
    small_limits: Server, chunked: bool
) -> None:
    at_limit = b'{"csr": "not a csr"}'.ljust(4096, b" ")
    with small_limits.client() as client:
        for body, status in ((at_limit, 422), (at_limit + b" ", 413)):
            content: bytes | Iterator[bytes] = iter([body]) if chunked else body
            response = client.post(
                "/api/v1/issuers/local/certificates",
                content=content,
                headers={"Content-Type": JSON},
            )
            assert response.status_code == status, response.text
            assert response.headers["content-type"] == PROBLEM


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_ocsp_request_at_the_limit_is_answered_and_one_byte_more_is_413(
    small_limits: Server, chunked: bool
) -> None:
    limit = 16 * 1024  # max_ocsp_request_bytes default
    with httpx.Client(base_url=small_limits.url, timeout=30, trust_env=False) as client:
        for size, status in ((limit, 200), (limit + 1, 413)):
            body = bytes(size)
            content: bytes | Iterator[bytes] = iter([body]) if chunked else body
            response = client.post(
                "/.well-known/pki/ocsp/local",
                content=content,
                headers={"Content-Type": "application/ocsp-request"},
            )
            assert response.status_code == status, response.text
            if status == 200:  # malformedRequest, as an OCSP response
                answer = ocsp.load_der_ocsp_response(response.content)
                assert answer.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_a_64_mib_streamed_body_is_refused_with_bounded_server_memory(
    small_limits: Server,
) -> None:
    assert small_limits.process is not None
    process = psutil.Process(small_limits.process.pid)
    before = process.memory_info().rss
    outcomes = []
    with small_limits.client() as client:
        for path, media in (
            ("/api/v1/issuers/local/certificates", JSON),
            ("/.well-known/pki/ocsp/local", "application/ocsp-request"),
        ):
            try:
                response = client.post(
                    path, content=_chunks(64 << 20), headers={"Content-Type": media}
                )
                outcomes.append(str(response.status_code))
            except httpx.TransportError as exc:  # the server may hang up mid-upload
                outcomes.append(type(exc).__name__)
    grown = process.memory_info().rss - before
    print(f"server RSS growth after two 64 MiB uploads: {grown} bytes; outcomes {outcomes}")
    assert all(o == "413" or o.endswith("Error") for o in outcomes), outcomes
    assert grown < 16 << 20  # far below the 128 MiB sent
