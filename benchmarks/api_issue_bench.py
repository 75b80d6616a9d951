"""Issuance through the server's API against the step-ca connector through the registry.

Same real step-ca, same run, deployment-shaped: step-ca pinned to core 0 (a CA on its own
host) and the certctl side to core 1 — the benchmark process itself for the registry
rows, the server process (``python -m certctl_host.server``, with its ledger write on
every issuance) for the API rows. The API's HTTP client is the benchmark process, pinned
to core 0 with step-ca: its cost is the caller's, not the server's. CSRs are made before
the clock starts on both sides.

Rounds are interleaved (registry, API, registry, API, ...); the ratio is the median of
per-round ratios. Server CPU per issuance is the server process's user + system time
over the API rounds divided by their issuances.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import median, render_table

__all__ = ["run"]

CONCURRENCY = 8


def _csrs(count: int) -> list[Any]:
    from benchmarks.stepca_bench import new_csr

    return [new_csr()[0] for _ in range(count)]


async def _registry_round(registry: Any, csrs: list[Any], tasks: int) -> dict[str, float]:
    from certctl_core import CertificateRequest, Profile

    profile = Profile("bench", max_ttl=dt.timedelta(hours=24))
    pending = iter(csrs)

    async def worker() -> None:
        for csr in pending:
            await registry.issue("bench", CertificateRequest.from_csr(csr, profile=profile))

    cpu = time.process_time()
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    wall = time.perf_counter() - start
    return {"per_second": len(csrs) / wall, "cpu_ms": (time.process_time() - cpu) / len(csrs) * 1e3}


def _api_round(server: Any, token: str, pems: list[str], threads: int) -> dict[str, float]:
    import httpx

    auth = {"Authorization": f"Bearer {token}"}

    def batch(part: list[str]) -> None:
        with httpx.Client(base_url=server.url, headers=auth, timeout=60, trust_env=False) as api:
            for pem in part:
                answer = api.post(
                    "/api/v1/issuers/bench/certificates",
                    json={"csr": pem},
                )
                if answer.status_code != 201:
                    raise RuntimeError(f"API issuance failed: {answer.status_code} {answer.text}")

    cpu = server.cpu_seconds()
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(batch, [pems[i::threads] for i in range(threads)]))
    wall = time.perf_counter() - start
    spent = server.cpu_seconds() - cpu
    return {"per_second": len(pems) / wall, "cpu_ms": spent / len(pems) * 1e3}


async def _run(count: int, rounds: int, pinned: bool) -> dict[str, Any]:
    import httpx
    from cryptography.hazmat.primitives import serialization

    from benchmarks.ocsp_http_bench import _Server
    from benchmarks.stepca_bench import CA_CORE, CLIENT_CORE, Bench, _pin
    from certctl_core.host import PluginHost, Registry

    token = secrets.token_urlsafe(32)
    results: dict[str, list[dict[str, float]]] = {
        k: [] for k in ("reg_seq", "api_seq", "reg_conc", "api_conc")
    }
    with tempfile.TemporaryDirectory(prefix="certctl-bench-api-") as tmp:
        bench = Bench(Path(tmp))
        with bench.ca:
            server = _Server(Path(tmp), token)
            try:
                if pinned:
                    assert bench.ca.pid is not None
                    _pin(bench.ca.pid, CA_CORE)
                    _pin(server.process.pid, CLIENT_CORE)
                with httpx.Client(base_url=server.url, timeout=60, trust_env=False) as api:
                    api.put(  # noqa: ASYNC212 - set-up, before any clock
                        "/api/v1/issuers/bench",
                        json={"type": "stepca", "config": bench.config()},
                        headers={"Authorization": f"Bearer {token}"},
                    ).raise_for_status()
                async with Registry(PluginHost.discover()) as registry:
                    await registry.build("bench", "stepca", bench.config())
                    warm = _csrs(2 * CONCURRENCY)
                    pem = serialization.Encoding.PEM
                    for shape, tasks in (("seq", 1), ("conc", CONCURRENCY)):
                        for _ in range(rounds):
                            if pinned:
                                _pin("self", CLIENT_CORE)
                            await _registry_round(registry, warm, tasks)
                            results[f"reg_{shape}"].append(
                                await _registry_round(registry, _csrs(count), tasks)
                            )
                            if pinned:
                                _pin("self", CA_CORE)
                            pems = [c.public_bytes(pem).decode() for c in _csrs(count)]
                            _api_round(
                                server, token, [c.public_bytes(pem).decode() for c in warm], tasks
                            )
                            results[f"api_{shape}"].append(_api_round(server, token, pems, tasks))
            finally:
                server.stop()

    def summary(key: str) -> dict[str, Any]:
        rows = results[key]
        return {
            "per_second": round(median([r["per_second"] for r in rows]), 1),
            "per_second_rounds": [round(r["per_second"], 1) for r in rows],
            "cpu_ms_per_issuance": round(median([r["cpu_ms"] for r in rows]), 3),
        }

    def ratio(api: str, reg: str) -> float:
        pairs = zip(results[api], results[reg], strict=True)
        return round(median([a["per_second"] / r["per_second"] for a, r in pairs]), 3)

    out: dict[str, Any] = {
        "count": count,
        "rounds": rounds,
        "pinned": {"step_ca_core": 0, "certctl_core": 1} if pinned else None,
        "registry_sequential": summary("reg_seq"),
        "api_sequential": summary("api_seq"),
        "registry_8_tasks": summary("reg_conc"),
        "api_8_threads": summary("api_conc"),
        "ratio_sequential": ratio("api_seq", "reg_seq"),
        "ratio_concurrent": ratio("api_conc", "reg_conc"),
    }
    rows = [
        [label, f"{fig['per_second']:,.0f}", fig["cpu_ms_per_issuance"], r]
        for label, fig, r in (
            ("registry, sequential", out["registry_sequential"], ""),
            ("API, sequential", out["api_sequential"], out["ratio_sequential"]),
            ("registry, 8 tasks", out["registry_8_tasks"], ""),
            ("API, 8 client threads", out["api_8_threads"], out["ratio_concurrent"]),
        )
    ]
    out["table"] = render_table(
        "Issuance through the API vs the connector through the registry (same step-ca; "
        + ("step-ca on core 0, certctl on core 1)" if pinned else "not pinned)"),
        ["path", "issued/s", "certctl CPU ms/issuance", "ratio to registry"],
        rows,
    )
    return out


def run(*, count: int = 200, rounds: int = 3, pin: bool = True) -> dict[str, Any]:
    from benchmarks.stepca_bench import _pinning_possible, _threads

    pinned = pin and _pinning_possible()
    before = os.sched_getaffinity(0) if pinned else None
    try:
        return asyncio.run(_run(count, rounds, pinned))
    finally:
        if before is not None:
            for tid in _threads("self"):
                with contextlib.suppress(ProcessLookupError):
                    os.sched_setaffinity(tid, before)


if __name__ == "__main__":
    import json
    import sys

    result = run(count=int(sys.argv[1]) if len(sys.argv) > 1 else 200)
    print(result.pop("table"))
    print(json.dumps(result, indent=2))
