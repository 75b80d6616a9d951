"""ACME issuance against one real step-ca, beside ``/1.0/sign`` on the same CA.

``python -m benchmarks.acme_bench [--smoke] [--acme-python PATH]``

One step-ca with a JWK provisioner and an ACME provisioner. Measured in one run,
interleaved round by round so that machine drift hits every side alike:

* ``sign``: the step-ca connector (``/1.0/sign``, one signed token per certificate), the
  baseline every other figure is divided by;
* ``acme``: the ACME connector, a full RFC 8555 order per certificate (new order, one
  authorization, http-01 answered by its own responder on port 80 and validated by
  step-ca, finalize, download): 7 signed POSTs plus step-ca's GET to port 80;
* ``acme-lib`` (with ``--acme-python``, an interpreter that has the ``acme`` package from
  PyPI): the same order through ``acme.client.ClientV2`` (sync, requests + josepy), in a
  subprocess, with the benchmark's own 50 ms polling instead of the library's 1 s sleep,
  the http-01 answer served by a thread in that process. Reported alone (other process,
  other CPU accounting) but beside the same baseline.

Sequential and ``CONCURRENCY`` concurrent (asyncio tasks) issuances; the key and CSR are
made inside the timed call on every side. Needs root (port 80), like the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchmarks._common import machine, render_table
from certctl_acme import build_acme_issuer
from certctl_contracts.csr import build_csr, new_private_key
from certctl_core import CertificateRequest, IssuerPort, SubjectAltNames
from certctl_stepca import build_stepca_issuer
from certctl_stepca.testing import (
    StepCA,
    acme_provisioner_entry,
    make_provisioner_key,
    provisioner_entry,
)

__all__ = ["run"]

PASSWORD = "benchmark-only-password"  # noqa: S105 - a throwaway provisioner
CLAIMS = {"minTLSCertDuration": "5m", "defaultTLSCertDuration": "24h", "maxTLSCertDuration": "48h"}
CONCURRENCY = 8
SIZES = {"full": {"count": 60, "rounds": 3}, "smoke": {"count": 3, "rounds": 1}}


def _request() -> CertificateRequest:
    csr, _ = build_csr(
        SubjectAltNames(dns=("localhost",)), common_name="localhost", key=new_private_key("ec-p256")
    )
    return CertificateRequest.from_csr(csr)


async def _rate(issuer: IssuerPort, count: int, concurrency: int) -> tuple[float, float]:
    """Issuances per second, ``count`` certificates ``concurrency`` at a time, and this
    process's CPU per issuance in ms (the client: step-ca is another process)."""
    semaphore = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with semaphore:
            await issuer.issue(_request())

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one() for _ in range(count)))
    wall, used = time.perf_counter() - start, time.process_time() - cpu
    return count / wall, used / count * 1e3


_LIB_SCRIPT = textwrap.dedent(
    """
    import datetime, http.server, json, sys, threading, time
    import josepy
    from acme import challenges, client, messages
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    directory_url, root, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    tokens = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = tokens.get(self.path.rsplit("/", 1)[-1], "").encode()
            self.send_response(200 if body else 404)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("0.0.0.0", 80), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    key = josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    net = client.ClientNetwork(key, alg=josepy.ES256, user_agent="bench")
    directory = messages.Directory.from_json(net.get(directory_url).json())
    acme = client.ClientV2(directory, net=net)
    registration = messages.NewRegistration.from_data(terms_of_service_agreed=True)
    acme.net.account = acme.new_account(registration)

    def issue():
        k = ec.generate_private_key(ec.SECP256R1())
        name = "localhost"
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
               .sign(k, hashes.SHA256()))
        pem = csr.public_bytes(serialization.Encoding.PEM)
        order = acme.new_order(pem)
        for authz in order.authorizations:
            chall = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01))
            response, validation = chall.response_and_validation(key)
            tokens[chall.chall.encode("token")] = validation
            acme.answer_challenge(chall, response)
        for authz in order.authorizations:  # step-ca validated inside the challenge POST
            acme._post_as_get(authz.uri)
        acme.begin_finalization(order)
        while True:
            body = messages.Order.from_json(acme._post_as_get(order.uri).json())
            if body.status == messages.STATUS_VALID:
                break
            time.sleep(0.05)
        acme._post_as_get(body.certificate).text

    issue()  # warm-up
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        issue()
    wall, used = time.perf_counter() - start, time.process_time() - cpu
    print(json.dumps({"sequential_per_s": count / wall, "client_cpu_ms": used / count * 1e3}))
    server.shutdown()
    """
)


def _acme_lib(python: str, directory_url: str, root: Path, count: int) -> dict[str, float] | None:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
        script.write(_LIB_SCRIPT)
    done = subprocess.run(
        [python, script.name, directory_url, str(root), str(count)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        # The library passes verify=True per request: requests then reads the bundle here.
        env={**os.environ, "REQUESTS_CA_BUNDLE": str(root)},
    )
    Path(script.name).unlink()
    if done.returncode != 0:
        print(done.stderr[-2000:], file=sys.stderr)
        return None
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return {key: round(float(value), 2) for key, value in figures.items()}


async def _measure(
    sides: dict[str, Callable[[], Awaitable[IssuerPort]]], count: int, rounds: int
) -> dict[str, dict[str, list[float]]]:
    results: dict[str, dict[str, list[float]]] = {
        n: {"seq": [], "conc": [], "cpu": []} for n in sides
    }
    issuers = {name: await build() for name, build in sides.items()}
    try:
        for issuer in issuers.values():  # warm-up: account, directory, connections
            await issuer.issue(_request())
        for _ in range(rounds):
            for name, issuer in issuers.items():
                rate, cpu = await _rate(issuer, count, 1)
                results[name]["seq"].append(rate)
                results[name]["cpu"].append(cpu)
                results[name]["conc"].append((await _rate(issuer, count, CONCURRENCY))[0])
    finally:
        for issuer in issuers.values():
            await issuer.close()
    return results


def run(size: str = "full", acme_python: str | None = None) -> dict[str, Any]:
    count, rounds = SIZES[size]["count"], SIZES[size]["rounds"]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        key = make_provisioner_key("bench", PASSWORD)
        ca = StepCA.create(
            workdir / "ca",
            provisioners=[
                provisioner_entry(key, claims=CLAIMS),
                acme_provisioner_entry("acme", claims=CLAIMS),
            ],
        )
        with ca:
            key_file = key.write_key_file(workdir / "key.json")
            password_file = key.write_password_file(workdir / "password")
            sign_config = {
                "ca_url": ca.url,
                "provisioner_name": key.name,
                "provisioner_key_path": str(key_file),
                "provisioner_password_file": str(password_file),
                "root_cert_path": str(ca.root_file),
            }
            acme_config = {
                "directory_url": ca.acme_directory_url("acme"),
                "tls_root_path": str(ca.root_file),
                "http_address": "*:80",
                "poll_interval_seconds": 0.05,
            }
            sides: dict[str, Callable[[], Awaitable[IssuerPort]]] = {
                "sign": lambda: build_stepca_issuer("bench-sign", sign_config, env={}),
                "acme": lambda: build_acme_issuer("bench-acme", acme_config),
            }
            results = asyncio.run(_measure(sides, count, rounds))
            lib = None
            if acme_python:
                lib = _acme_lib(acme_python, ca.acme_directory_url("acme"), ca.root_file, count)
    summary: dict[str, Any] = {"count": count, "rounds": rounds, "concurrency": CONCURRENCY}
    for name, figures in results.items():
        summary[name] = {
            "sequential_per_s": round(statistics.median(figures["seq"]), 1),
            "concurrent_per_s": round(statistics.median(figures["conc"]), 1),
            "client_cpu_ms": round(statistics.median(figures["cpu"]), 2),
        }
    base = summary["sign"]
    summary["acme_vs_sign"] = {
        "sequential": round(summary["acme"]["sequential_per_s"] / base["sequential_per_s"], 3),
        "concurrent": round(summary["acme"]["concurrent_per_s"] / base["concurrent_per_s"], 3),
    }
    if lib is not None:
        summary["acme_lib"] = lib
        ratio = lib["sequential_per_s"] / base["sequential_per_s"]
        summary["acme_lib_vs_sign"] = {"sequential": round(ratio, 3)}
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: proves it runs")
    parser.add_argument("--acme-python", help="a Python with the 'acme' package, for acme-lib")
    args = parser.parse_args(argv)
    summary = run("smoke" if args.smoke else "full", args.acme_python)
    rows = [
        [
            name,
            summary[name]["sequential_per_s"],
            summary[name].get("concurrent_per_s", "-"),
            summary[name]["client_cpu_ms"],
        ]
        for name in ("sign", "acme", "acme_lib")
        if name in summary
    ]
    title = "ACME vs /1.0/sign on one step-ca (issuances per second)"
    header = ["side", "sequential /s", f"{CONCURRENCY} concurrent /s", "client CPU ms/issuance"]
    print(render_table(title, header, rows))
    print(json.dumps({"machine": machine(), "acme": summary}, indent=2))


if __name__ == "__main__":
    main()
