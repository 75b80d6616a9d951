"""Figures for docs/reliability.md: ``python -m tests.reliability.measure``.

Measures, against a real step-ca behind the fault proxy, how long each fault takes to
become a typed error and how fast the same connector recovers. Not a test: timings go in
the document, never in assertions.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from certctl_core import CertctlError
from certctl_stepca import StepCAIssuer, build_stepca_issuer
from certctl_stepca.testing import (
    Fault,
    FaultProxy,
    StepCA,
    make_provisioner_key,
    provisioner_entry,
)
from tests.csr import make_request

RUNS = 5


async def timed(action: Callable[[], Awaitable[object]]) -> tuple[float, str]:
    started = time.perf_counter()
    try:
        await action()
        outcome = "ok"
    except CertctlError as exc:
        outcome = type(exc).__name__
    return time.perf_counter() - started, outcome


async def main() -> None:
    directory = Path(tempfile.mkdtemp(prefix="certctl-measure-"))
    key = make_provisioner_key("measure", "measure password")
    ca = StepCA.create(directory / "ca", provisioners=[provisioner_entry(key)])
    ca.start()
    proxy = FaultProxy.for_stepca(ca, directory / "proxy")
    proxy.start()
    key_file = key.write_key_file(directory / "key.json")

    async def issuer(url: str, **extra: object) -> StepCAIssuer:
        config = {
            "ca_url": url,
            "provisioner_name": key.name,
            "provisioner_key_path": str(key_file),
            "provisioner_password": "measure password",
            "root_cert_path": str(ca.root_file),
            **extra,
        }
        return await build_stepca_issuer("measure", config, env={})

    try:
        direct = await issuer(ca.url)
        proxied = await issuer(proxy.url, timeout_seconds=0.5, max_retries=2)
        for name, target in (("direct", direct), ("via proxy", proxied)):
            await target.issue(make_request())
            durations = []
            for _ in range(50):
                started = time.perf_counter()
                await target.issue(make_request())
                durations.append(time.perf_counter() - started)
            print(f"issue {name}: median {statistics.median(durations) * 1000:.1f} ms")

        cases: list[tuple[str, Fault, float]] = [
            ("reset before forwarding, every attempt", Fault.RESET, 0.0),
            ("answer dropped after the CA signed, once", Fault.DROP_AFTER_FORWARD, 0.0),
            ("black hole (timeout 0.5 s), every attempt", Fault.BLACKHOLE, 0.0),
            ("latency 2 s > timeout 0.5 s, every attempt", Fault.DELAY, 2.0),
        ]
        for label, fault, delay in cases:
            results = []
            for _ in range(RUNS):
                proxy.clear_faults()
                once = 1 if fault is Fault.DROP_AFTER_FORWARD else None
                proxy.inject(fault, path="/1.0/sign", times=once, delay=delay)
                results.append(await timed(lambda: proxied.issue(make_request())))
            proxy.clear_faults()
            median = statistics.median(t for t, _ in results) * 1000
            outcomes = sorted({o for _, o in results})
            print(f"{label}: {outcomes}, median {median:.0f} ms to the outcome (max_retries 2)")

        kills = []
        for _ in range(RUNS):
            await direct.issue(make_request())
            ca.kill()
            failed, outcome = await timed(lambda: direct.issue(make_request()))
            started = time.perf_counter()
            ca.restart()
            restarted = time.perf_counter() - started
            back, again = await timed(lambda: direct.issue(make_request()))
            kills.append((failed, outcome, restarted, back, again))
        print(
            "SIGKILL: "
            f"{sorted({k[1] for k in kills})} after median "
            f"{statistics.median(k[0] for k in kills) * 1000:.0f} ms; restart "
            f"{statistics.median(k[2] for k in kills) * 1000:.0f} ms; first issuance after "
            f"restart {sorted({k[4] for k in kills})} in "
            f"{statistics.median(k[3] for k in kills) * 1000:.0f} ms (same connector)"
        )
        await direct.close()
        await proxied.close()
    finally:
        proxy.stop()
        ca.stop()


if __name__ == "__main__":
    asyncio.run(main())
