"""Issuance against one real step-ca: a raw baseline client and the certctl connector.

The baseline is the least a client can do (written here, importing nothing from the
connector): a fresh P-256 key, CSR and one-time token per call, ``POST /1.0/sign`` over
one keep-alive ``httpx.Client``, the leaf parsed from the answer. It runs sequentially
and with 8 threads sharing the client. The connector runs through the registry, with
everything it does in production: profile policy before and after, the CSR's signature
checked, the provisioner's limits applied, the returned chain verified to the pinned
root, key and SANs compared. It runs sequentially and as 8 concurrent asyncio tasks.

Deployment-shaped: where the machine has two cores or more, step-ca (every one of its
threads) is pinned to core 0 and this process to core 1, so the CA and the client do not
take CPU from each other and the client's cost shows. Each run also reports the client's
CPU per issuance (``time.process_time()`` over the run, every thread of this process;
step-ca is another process and not counted).

Both sides generate the key and CSR inside the timed call, so the work a caller does is
the same on both sides. Rounds are interleaved (baseline, connector, baseline, ...) so
that drift in the machine's load hits both alike; throughputs are the median over rounds
and the ratio is the median of the per-round ratios.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import itertools
import json
import os
import secrets
import ssl
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from jwcrypto import jws

from benchmarks._common import latency_summary, median, per_call_us, render_table
from certctl_stepca.testing import ProvisionerKey, StepCA, make_provisioner_key, provisioner_entry

__all__ = ["BaselineClient", "new_csr", "run"]

PASSWORD = "benchmark-only-password"  # noqa: S105 - a throwaway provisioner
CLAIMS = {"minTLSCertDuration": "5m", "defaultTLSCertDuration": "24h", "maxTLSCertDuration": "48h"}
CONCURRENCY = 8
CA_CORE, CLIENT_CORE = 0, 1
_names = itertools.count()


def _threads(pid: int | str) -> Iterator[int]:
    """Every thread (task) of a process."""
    for name in os.listdir(f"/proc/{pid}/task"):
        yield int(name)


def _pin(pid: int | str, core: int) -> None:
    """Pin every thread of ``pid`` to ``core`` (as ``taskset -a -p -c``); threads it
    starts later inherit the affinity."""
    for tid in _threads(pid):
        try:
            os.sched_setaffinity(tid, {core})
        except ProcessLookupError:  # the thread ended meanwhile
            continue


def _pinning_possible() -> bool:
    return hasattr(os, "sched_setaffinity") and {CA_CORE, CLIENT_CORE} <= os.sched_getaffinity(0)


def new_csr() -> tuple[x509.CertificateSigningRequest, str]:
    """A fresh P-256 key and a CSR for a unique DNS name (the name is the CN and the SAN)."""
    name = f"bench-{next(_names)}.example.test"
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr, name


class BaselineClient:
    """The minimal raw step-ca client: one keep-alive ``httpx.Client``, jwcrypto tokens.

    Deliberately independent of the connector's code (its HTTP, its token signer, its
    config): it is the yardstick, and must not get faster or slower with the connector.
    """

    def __init__(self, ca: StepCA, key: ProvisionerKey, *, connections: int = CONCURRENCY) -> None:
        self._key = key
        self._jwk = key.signing_jwk()
        self._audience = f"https://{ca.dns_names[0]}/1.0/sign"
        context = ssl.create_default_context(cafile=str(ca.root_file))
        self._client = httpx.Client(
            base_url=ca.url,
            verify=context,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            trust_env=False,
        )

    def token(self, subject: str) -> str:
        # Its own minter (jwcrypto), not certctl_stepca._token: see the class docstring.
        now = int(time.time())
        claims = {
            "iss": self._key.name,
            "sub": subject,
            "sans": [subject],
            "aud": self._audience,
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": secrets.token_hex(32),
        }
        header = {"alg": self._key.jws_alg, "kid": self._key.kid, "typ": "JWT"}
        signed = jws.JWS(json.dumps(claims).encode())
        signed.add_signature(self._jwk, alg=self._key.jws_alg, protected=json.dumps(header))
        return str(signed.serialize(compact=True))

    def issue(self) -> x509.Certificate:
        csr, name = new_csr()
        body = {
            "csr": csr.public_bytes(serialization.Encoding.PEM).decode(),
            "ott": self.token(name),
        }
        response = self._client.post("/1.0/sign", json=body)
        if response.status_code != 201:
            raise RuntimeError(f"baseline sign failed: {response.status_code} {response.text}")
        return x509.load_pem_x509_certificate(response.json()["crt"].encode())

    def close(self) -> None:
        self._client.close()


def _baseline_run(client: BaselineClient, count: int, threads: int) -> dict[str, Any]:
    latencies: list[float] = []
    lock = threading.Lock()
    cpu = time.process_time()

    def one(_: int) -> None:
        start = time.perf_counter()
        client.issue()
        elapsed = time.perf_counter() - start
        with lock:
            latencies.append(elapsed)

    start = time.perf_counter()
    if threads == 1:
        for i in range(count):
            one(i)
    else:
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, range(count)))
    wall = time.perf_counter() - start
    return _figures(count, wall, time.process_time() - cpu, latencies)


def _figures(count: int, wall: float, cpu: float, latencies: list[float]) -> dict[str, Any]:
    return {"per_second": count / wall, "cpu_ms": cpu / count * 1e3, "latencies": latencies}


async def _connector_run(
    issue: Callable[[], Awaitable[object]], count: int, tasks: int
) -> dict[str, Any]:
    latencies: list[float] = []
    remaining = iter(range(count))

    async def worker() -> None:
        for _ in remaining:
            start = time.perf_counter()
            await issue()
            latencies.append(time.perf_counter() - start)

    cpu = time.process_time()
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    wall = time.perf_counter() - start
    return _figures(count, wall, time.process_time() - cpu, latencies)


def _summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = [x for r in rounds for x in r["latencies"]]
    return {
        "per_second": round(median([r["per_second"] for r in rounds]), 1),
        "per_second_rounds": [round(r["per_second"], 1) for r in rounds],
        "client_cpu_ms_per_issuance": round(median([r["cpu_ms"] for r in rounds]), 3),
        **latency_summary(latencies),
    }


def _ratio(ours: list[dict[str, Any]], base: list[dict[str, Any]]) -> float:
    return round(
        median([o["per_second"] / b["per_second"] for o, b in zip(ours, base, strict=True)]), 3
    )


class Bench:
    """A step-ca, a baseline client and a registry with the connector, for one run."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.key = make_provisioner_key("bench", PASSWORD)
        self.ca = StepCA.create(
            workdir / "ca", provisioners=[provisioner_entry(self.key, claims=CLAIMS)]
        )
        self.key_file = self.key.write_key_file(workdir / "provisioner.json")
        self.password_file = self.key.write_password_file(workdir / "password.txt")

    def config_object(self) -> Any:
        from certctl_stepca.config import StepCAConfig

        return StepCAConfig.from_mapping(self.config(), env={}, issuer_id="bench")

    def config(self, **overrides: Any) -> dict[str, Any]:
        return {
            "ca_url": self.ca.url,
            "provisioner_name": self.key.name,
            "provisioner_key_path": str(self.key_file),
            "provisioner_password_file": str(self.password_file),
            "root_cert_path": str(self.ca.root_file),
            **overrides,
        }


async def run(
    *,
    sequential: int = 300,
    concurrent: int = 600,
    rounds: int = 3,
    micro_count: int = 2000,
    config_overrides: dict[str, Any] | None = None,
    pin: bool = True,
) -> dict[str, Any]:
    """Run the step-ca benchmark; returns the JSON-ready results (and a ``table`` text).

    With ``pin`` (and two cores or more), step-ca runs on core 0 and this process on
    core 1 for the whole run; the affinity of this process is restored at the end.
    """
    pinned = pin and _pinning_possible()
    before = os.sched_getaffinity(0) if pinned else None
    try:
        return await _run(sequential, concurrent, rounds, micro_count, config_overrides, pinned)
    finally:
        if before is not None:
            for tid in _threads("self"):
                with contextlib.suppress(ProcessLookupError):
                    os.sched_setaffinity(tid, before)


async def _run(
    sequential: int,
    concurrent: int,
    rounds: int,
    micro_count: int,
    config_overrides: dict[str, Any] | None,
    pinned: bool,
) -> dict[str, Any]:
    from certctl_core import CertificateRequest, Profile
    from certctl_core.host import PluginHost, Registry

    profile = Profile("bench", max_ttl=dt.timedelta(hours=24))
    with tempfile.TemporaryDirectory(prefix="certctl-bench-") as tmp:
        bench = Bench(Path(tmp))
        with bench.ca:
            if pinned:
                assert bench.ca.pid is not None
                _pin(bench.ca.pid, CA_CORE)
                _pin("self", CLIENT_CORE)
            baseline = BaselineClient(bench.ca, bench.key)
            async with Registry(PluginHost.discover()) as registry:
                await registry.build("bench", "stepca", bench.config(**(config_overrides or {})))

                async def connector_issue() -> object:
                    csr, _ = new_csr()
                    return await registry.issue(
                        "bench", CertificateRequest.from_csr(csr, profile=profile)
                    )

                # Warm up: TLS handshakes, the provisioner's limits, code paths.
                for _ in range(10):
                    baseline.issue()
                    await connector_issue()
                await _connector_run(connector_issue, 4 * CONCURRENCY, CONCURRENCY)
                _baseline_run(baseline, 4 * CONCURRENCY, CONCURRENCY)

                results: dict[str, list[dict[str, Any]]] = {
                    k: [] for k in ("base_seq", "conn_seq", "base_thr", "conn_conc")
                }
                for _ in range(rounds):
                    results["base_seq"].append(_baseline_run(baseline, sequential, 1))
                    results["conn_seq"].append(await _connector_run(connector_issue, sequential, 1))
                    results["base_thr"].append(_baseline_run(baseline, concurrent, CONCURRENCY))
                    results["conn_conc"].append(
                        await _connector_run(connector_issue, concurrent, CONCURRENCY)
                    )
                micro_figures = await _micro(bench, registry, baseline, micro_count)
            baseline.close()
    out: dict[str, Any] = {
        "sizes": {"sequential": sequential, "concurrent": concurrent, "rounds": rounds},
        "concurrency": CONCURRENCY,
        "pinned": {"step_ca_core": CA_CORE, "client_core": CLIENT_CORE} if pinned else None,
        "baseline_sequential": _summarise(results["base_seq"]),
        "baseline_8_threads": _summarise(results["base_thr"]),
        "connector_sequential": _summarise(results["conn_seq"]),
        "connector_8_tasks": _summarise(results["conn_conc"]),
        "ratio_sequential": _ratio(results["conn_seq"], results["base_seq"]),
        "ratio_concurrent": _ratio(results["conn_conc"], results["base_thr"]),
        "micro": micro_figures,
    }
    out["table"] = _table(out)
    return out


async def _micro(
    bench: Bench, registry: Any, baseline: BaselineClient, count: int
) -> dict[str, Any]:
    """Per-issuance overheads, connector build (key decryption) and hot-swap latency."""
    from certctl_core import CertificateRequest, Profile
    from certctl_core.policy import cap_request, verify_issued
    from certctl_stepca._token import mint_token
    from certctl_stepca.connector import StepCAIssuer, build_stepca_issuer

    profile = Profile("bench", max_ttl=dt.timedelta(hours=24))
    csr, name = new_csr()
    request = CertificateRequest.from_csr(csr, profile=profile)
    issued = await registry.issue("bench", request)
    requested_at = dt.datetime.now(dt.UTC)
    async with registry.lease("bench") as connector:
        assert isinstance(connector, StepCAIssuer)
        issuer: StepCAIssuer = connector
        key = issuer._key
        cfg = issuer.config
        validity = await issuer._validity_for(request)

    def connector_token() -> str:
        return mint_token(
            key,
            issuer=cfg.provisioner_name,
            audience=cfg.audience("sign"),
            subject=name,
            sans=[name],
        )

    def policy() -> None:
        capped = cap_request(request)
        verify_issued(capped, issued, requested_at=requested_at)

    def verification() -> None:
        issuer._verify(request, issued, validity)

    figures: dict[str, Any] = {
        "token_mint_connector_us": per_call_us(connector_token, count),
        "token_mint_baseline_jwcrypto_us": per_call_us(lambda: baseline.token(name), count),
        "key_and_csr_us": per_call_us(new_csr, max(1, count // 4)),
        "policy_us": per_call_us(policy, count),
        "connector_verification_us": per_call_us(verification, count),
    }
    loops = 5 if count >= 100 else 2
    build_ms = []
    for _ in range(loops):
        start = time.perf_counter()
        built = await build_stepca_issuer("bench-build", bench.config(), env={})
        build_ms.append((time.perf_counter() - start) * 1e3)
        await built.close()
    figures["connector_build_ms"] = round(median(build_ms), 2)

    swap_ms = []
    for _ in range(loops):
        start = time.perf_counter()
        await registry.rebuild("bench", bench.config(), force=True)
        swap_ms.append((time.perf_counter() - start) * 1e3)
    figures["hot_swap_idle_ms"] = round(median(swap_ms), 2)
    figures.update(await _swap_under_load(bench, registry, profile))
    figures.update(await _http_cpu(bench, max(10, count // 4)))
    return figures


async def _http_cpu(bench: Bench, count: int) -> dict[str, float]:
    """Client CPU per request of four HTTP stacks, sequential, same step-ca, same body.

    The fourth is the connector's own (asyncio TLS and h11, ADR 0016 and 0020).

    The body is a malformed sign request (step-ca answers 400 at once), so the figure is
    the client's cost of one HTTPS exchange on a kept-alive connection, nothing else.
    """
    import httpcore

    from certctl_stepca._http import _StreamPool

    body = {"csr": "x" * 600, "ott": "y" * 700}
    content = json.dumps(body).encode()
    context = ssl.create_default_context(cafile=str(bench.ca.root_file))
    url = f"{bench.ca.url}/1.0/sign"

    def cpu_us(run: Callable[[], object]) -> float:
        run()  # connect and warm up outside the measurement
        start = time.process_time()
        for _ in range(count):
            run()
        return round((time.process_time() - start) / count * 1e6, 1)

    async with httpx.AsyncClient(verify=context, trust_env=False) as client:
        await client.post(url, json=body)
        start = time.process_time()
        for _ in range(count):
            await client.post(url, json=body)
        async_us = round((time.process_time() - start) / count * 1e6, 1)
    with httpx.Client(verify=context, trust_env=False) as sync:
        sync_us = cpu_us(lambda: sync.post(url, json=body).content)
    with httpcore.ConnectionPool(ssl_context=context) as pool:
        headers = [(b"Content-Type", b"application/json")]
        core_us = cpu_us(lambda: pool.request("POST", url, headers=headers, content=content))
    streams = _StreamPool(bench.config_object(), context)

    async def one() -> object:
        return await streams.send("POST", "/1.0/sign", headers, lambda: content)

    await one()
    start = time.process_time()
    for _ in range(count):
        await one()
    streams_us = round((time.process_time() - start) / count * 1e6, 1)
    await streams.aclose()
    return {
        "http_cpu_us_httpx_async": async_us,
        "http_cpu_us_httpx_sync": sync_us,
        "http_cpu_us_httpcore_sync": core_us,
        "http_cpu_us_asyncio_h11": streams_us,
    }


async def _swap_under_load(bench: Bench, registry: Any, profile: Any) -> dict[str, Any]:
    """Rebuild while 8 tasks issue: how long the swap takes and whether any issuance fails."""
    from certctl_core import CertificateRequest

    stop = asyncio.Event()
    failures = 0
    done = 0

    async def worker() -> None:
        nonlocal failures, done
        while not stop.is_set():
            csr, _ = new_csr()
            try:
                await registry.issue("bench", CertificateRequest.from_csr(csr, profile=profile))
                done += 1
            except Exception:  # noqa: BLE001 - counted, reported
                failures += 1

    workers = [asyncio.create_task(worker()) for _ in range(CONCURRENCY)]
    await asyncio.sleep(0.3)
    swaps = []
    for _ in range(3):
        start = time.perf_counter()
        await registry.rebuild("bench", bench.config(), force=True)
        swaps.append((time.perf_counter() - start) * 1e3)
        await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*workers)
    await registry.wait_retired()
    return {
        "hot_swap_under_load_ms": round(median(swaps), 2),
        "hot_swap_under_load_issued": done,
        "hot_swap_under_load_failures": failures,
    }


def _table(out: dict[str, Any]) -> str:
    rows = []
    for label, key, base_key in (
        ("baseline, sequential", "baseline_sequential", None),
        ("connector (registry), sequential", "connector_sequential", "ratio_sequential"),
        ("baseline, 8 threads", "baseline_8_threads", None),
        ("connector (registry), 8 asyncio tasks", "connector_8_tasks", "ratio_concurrent"),
    ):
        fig = out[key]
        rows.append(
            [
                label,
                f"{fig['per_second']:.0f}",
                " / ".join(f"{x:.0f}" for x in fig["per_second_rounds"]),
                f"{fig['median_ms']:.2f}",
                f"{fig['p95_ms']:.2f}",
                f"{fig['client_cpu_ms_per_issuance']:.2f}",
                f"{out[base_key]:.2f}" if base_key else "",
            ]
        )
    pinned = out["pinned"]
    where = (
        f"step-ca on core {pinned['step_ca_core']}, client on core {pinned['client_core']}"
        if pinned
        else "not pinned"
    )
    text = render_table(
        f"step-ca issuance (same step-ca, same run, {where}; ratio = connector / baseline)",
        [
            "client",
            "issued/s (median)",
            "rounds",
            "median ms",
            "p95 ms",
            "client CPU ms/issuance",
            "ratio",
        ],
        rows,
    )
    micro = out["micro"]
    if micro:
        text += render_table(
            "step-ca connector micro figures",
            ["figure", "value"],
            [[k, v] for k, v in micro.items()],
        )
    return text
