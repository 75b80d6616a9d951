"""OCSP and CRL over HTTP on loopback: the reference server against ``openssl ocsp``.

The server (``python -m certctl_host.server``) runs in its own process with a fresh data
directory, the rate limit raised out of the way and access logs off. A Local CA issuer is
created, ``certs`` certificates are issued through the API and ``revoked_fraction`` of
them revoked through the API. The baseline, ``openssl ocsp -index ... -multi 2`` (OpenSSL's
own responder, two processes), gets an ``index.txt`` with the same serials and the same
revocations and a P-256 delegated responder, like ours.

``wrk`` then drives both, in the same run, with the same mix (``benchmarks._ocsp_mix``):
requests spread over every serial, half with a nonce; POST of the DER request and GET of
its URL-encoded base64 (RFC 6960 Appendix A). Before the load, a sample of answers from
both is checked: successful, signed by the responder, and good / revoked with the reason
as issued. The ratios printed are ours / openssl's, same run.

The CRL part: a second Local CA issuer whose ledger holds ``crl_entries`` revoked
certificates (bulk-loaded before the server opens it); ``wrk`` GETs its CRL, in full and
revalidated with ``If-None-Match`` (304).

Without ``wrk`` or the server, the part reports ``status: not_run`` and the reason.
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["parse_wrk", "run"]

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
_LUA_HEADER = """
local etag = os.getenv("CERTCTL_BENCH_ETAG")
if etag ~= nil and etag ~= "" then wrk.headers["If-None-Match"] = etag end
"""


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"unexpected wrk duration {text!r}")
    return round(float(match.group(1)) * _UNITS[match.group(2)], 3)


def parse_wrk(output: str) -> dict[str, Any]:
    """Requests/s, latency percentiles (ms), errors from ``wrk --latency`` output."""
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if rate is None:
        raise ValueError(f"no Requests/sec in wrk output:\n{output}")
    result: dict[str, Any] = {"requests_per_second": round(float(rate.group(1)), 1)}
    for pct in ("50", "75", "90", "99"):
        found = re.search(rf"^\s+{pct}%\s+(\S+)", output, re.MULTILINE)
        result[f"p{pct}_ms"] = _ms(found.group(1)) if found else None
    total = re.search(r"(\d+) requests in", output)
    result["requests"] = int(total.group(1)) if total else None
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    result["non_2xx"] = int(non_2xx.group(1)) if non_2xx else 0
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    result["socket_errors"] = sum(int(g) for g in errors.groups()) if errors else 0
    return result


def _not_run(reason: str) -> dict[str, Any]:
    return {
        "status": "not_run",
        "reason": reason,
        "table": f"\n### OCSP over HTTP on loopback\n\nnot run: {reason}\n",
    }


class _Server:
    """The reference server in a child process, on a free loopback port."""

    def __init__(self, workdir: Path, token: str, extra: dict[str, Any] | None = None) -> None:
        settings = {
            "data_dir": str(workdir / "data"),
            "port": 0,
            "rate_limit_per_second": 1e6,
            "rate_limit_burst": 10_000_000,
            "log_level": "warning",
            "config_poll_seconds": 0,
            **(extra or {}),
        }
        path = workdir / "settings.json"
        path.write_text(json.dumps(settings))
        env = {**os.environ, "CERTCTL_API_TOKENS": token}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "certctl_host.server", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # "listening on http://127.0.0.1:PORT"
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"the server did not start: {line!r}")
        self.url = line.split()[-1]

    def cpu_seconds(self) -> float:
        """User + system CPU of the server process (and its children) so far."""
        import psutil

        proc = psutil.Process(self.process.pid)
        total = sum(proc.cpu_times()[:2])
        for child in proc.children(recursive=True):
            try:
                total += sum(child.cpu_times()[:2])
            except psutil.NoSuchProcess:
                continue
        return float(total)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class _OpenSSL:
    """``openssl ocsp`` serving an index on a free loopback port."""

    def __init__(self, argv_for_port: Any) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            argv_for_port(port),
            # With -multi, openssl 3.0 does not listen when started in a new session or
            # with the caller's stdin; its children are stopped by pid instead.
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        # "ACCEPT [::]:port PID=n" once it listens. Not probed with a connection: a worker
        # of OpenSSL 3.0 spins forever on a connection closed without a request.
        assert self.process.stdout is not None
        if self.process.stdout.readline().startswith("ACCEPT"):
            return
        self.stop()
        raise RuntimeError("openssl ocsp did not start listening")

    def stop(self) -> None:
        import psutil

        if self.process.poll() is not None:
            return
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        self.process.terminate()
        for child in children:  # the -multi workers
            try:
                child.terminate()
            except psutil.NoSuchProcess:
                continue
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        psutil.wait_procs(children, timeout=5)


def _issue_many(url: str, token: str, issuer_id: str, count: int) -> tuple[list[int], Any]:
    """Issue ``count`` certificates through the API (8 client threads); their serials
    and the issuing CA certificate."""
    import httpx
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from benchmarks.stepca_bench import new_csr

    auth = {"Authorization": f"Bearer {token}"}

    def batch(n: int) -> tuple[list[int], Any]:
        serials = []
        ca = None
        with httpx.Client(base_url=url, headers=auth, timeout=60, trust_env=False) as api:
            for _ in range(n):
                csr, _ = new_csr()
                answer = api.post(
                    f"/api/v1/issuers/{issuer_id}/certificates",
                    json={"csr": csr.public_bytes(serialization.Encoding.PEM).decode()},
                )
                answer.raise_for_status()
                doc = answer.json()
                serials.append(int(doc["serial_decimal"]))
                if ca is None:
                    ca = x509.load_pem_x509_certificates(doc["chain"].encode())[1]
        return serials, ca

    workers = 8
    shares = [count // workers + (1 if i < count % workers else 0) for i in range(workers)]
    serials: list[int] = []
    ca = None
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for got, issuer in pool.map(batch, [s for s in shares if s]):
            serials.extend(got)
            ca = ca or issuer
    return serials, ca


def _revoke_many(url: str, token: str, issuer_id: str, revoked: dict[int, int]) -> None:
    import httpx

    auth = {"Authorization": f"Bearer {token}"}
    items = list(revoked.items())

    def batch(part: list[tuple[int, int]]) -> None:
        with httpx.Client(base_url=url, headers=auth, timeout=60, trust_env=False) as api:
            for serial, reason in part:
                answer = api.post(
                    f"/api/v1/issuers/{issuer_id}/revocations",
                    json={"serial": str(serial), "reason": reason},
                )
                answer.raise_for_status()

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(batch, [items[i::4] for i in range(4)]))


def _check_sample(
    base: str, ca: Any, requests: list[bytes], expected: Any, sample: int = 40
) -> int:
    """POST and GET a sample of the mix; every answer must be signed by a responder the
    CA issued and state what was issued and revoked. Returns how many were checked."""
    import base64
    from urllib.parse import quote

    import httpx
    from cryptography.x509 import ocsp

    rng = random.Random(1)  # noqa: S311
    checked = 0
    with httpx.Client(timeout=30, trust_env=False) as client:
        for der in rng.sample(requests, min(sample, len(requests))):
            query = ocsp.load_der_ocsp_request(der)
            for method in ("POST", "GET"):
                if method == "POST":
                    body = client.post(
                        base, content=der, headers={"Content-Type": "application/ocsp-request"}
                    ).content
                else:
                    path = quote(base64.b64encode(der).decode(), safe="")
                    body = client.get(f"{base}/{path}").content
                answer = ocsp.load_der_ocsp_response(body)
                if answer.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
                    raise RuntimeError(f"{base}: OCSP answered {answer.response_status}")
                responder = answer.certificates[0]
                responder.verify_directly_issued_by(ca)
                from cryptography.hazmat.primitives.asymmetric import ec

                key = responder.public_key()
                assert isinstance(key, ec.EllipticCurvePublicKey)
                assert answer.signature_hash_algorithm is not None
                key.verify(
                    answer.signature,
                    answer.tbs_response_bytes,
                    ec.ECDSA(answer.signature_hash_algorithm),
                )
                serial = query.serial_number
                want = expected.revoked.get(serial)
                status = answer.certificate_status
                if want is None and status is not ocsp.OCSPCertStatus.GOOD:
                    raise RuntimeError(f"{base}: serial {serial:x} is {status}, expected good")
                if want is not None:
                    if status is not ocsp.OCSPCertStatus.REVOKED:
                        raise RuntimeError(f"{base}: serial {serial:x} is {status}, not revoked")
                    got = answer.revocation_reason
                    if want and (got is None or got.name == "unspecified"):
                        raise RuntimeError(f"{base}: serial {serial:x} lost its reason")
                nonce_oid = "1.3.6.1.5.5.7.48.1.2"
                nonces = [
                    e.value.nonce for e in query.extensions if e.oid.dotted_string == nonce_oid
                ]
                echoed = [
                    e.value.nonce for e in answer.extensions if e.oid.dotted_string == nonce_oid
                ]
                if nonces != echoed:
                    raise RuntimeError(f"{base}: nonce not echoed")
                checked += 1
    return checked


def _wrk(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    result = subprocess.run(
        ["wrk", "--latency", *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stderr}")
    return parse_wrk(result.stdout)


def _mix_wrk(
    load: list[str], script: Path, url: str, path: str, mode: str, inputs: Path
) -> dict[str, Any]:
    env = {
        **os.environ,
        "CERTCTL_BENCH_MODE": mode,
        "CERTCTL_BENCH_INPUT": str(inputs),
        "CERTCTL_BENCH_PATH": path,
    }
    return _wrk([*load, "-s", str(script), url + path], env=env)


def _crl_state(directory: Path, entries: int) -> str:
    """A Local CA state directory whose ledger holds ``entries`` revoked certificates;
    returns the key password."""
    import asyncio

    from benchmarks.localca_bench import revoked_rows
    from certctl_core import RevocationReason
    from certctl_localca import build_localca_issuer
    from certctl_localca._ledger import Ledger

    password = secrets.token_urlsafe(16)

    async def create() -> None:
        issuer = await build_localca_issuer(
            "crl", {"state_dir": str(directory), "key_password": password}
        )
        await issuer.close()

    asyncio.run(create())
    ledger = Ledger.open(directory)
    try:
        ledger.import_revoked(
            (serial, at, at + 86400 * 90, RevocationReason(reason))
            for serial, at, reason, _ in revoked_rows(entries)
        )
    finally:
        ledger.close()
    return password


def run(
    *,
    seconds: int = 10,
    connections: int = 16,
    threads: int = 2,
    certs: int = 10_000,
    revoked_fraction: float = 0.05,
    crl_entries: int = 100_000,
    openssl_processes: int = 2,
) -> dict[str, Any]:
    """OCSP (mix, against openssl) and CRL over HTTP; JSON-ready figures and a table."""
    missing = []
    if shutil.which("wrk") is None:
        missing.append("wrk is not installed (apt-get install wrk; scripts/bench.sh does)")
    if shutil.which("openssl") is None:
        missing.append("openssl is not installed")
    if importlib.util.find_spec("certctl_host.server") is None:
        missing.append("the reference server (certctl_host.server) is not in this tree")
    if missing:
        return _not_run("; ".join(missing))

    import httpx

    from benchmarks import _ocsp_mix as mix

    token = secrets.token_urlsafe(32)
    load = [f"-t{threads}", f"-c{connections}", f"-d{seconds}s"]
    out: dict[str, Any] = {
        "status": "ok",
        "load": {"seconds": seconds, "connections": connections, "threads": threads},
        "mix": {"certificates": certs, "revoked_fraction": revoked_fraction, "nonces": 0.5},
    }
    with tempfile.TemporaryDirectory(prefix="certctl-bench-ocsp-") as tmp:
        workdir = Path(tmp)
        crl_dir = workdir / "crl-ca"
        crl_password = _crl_state(crl_dir, crl_entries)
        server = _Server(workdir, token)
        try:
            auth = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=server.url, headers=auth, timeout=120) as api:
                for issuer_id, config in (
                    (
                        "bench",
                        {
                            "state_dir": str(workdir / "localca"),
                            "key_password": secrets.token_urlsafe(16),
                        },
                    ),
                    ("crl", {"state_dir": str(crl_dir), "key_password": crl_password}),
                ):
                    api.put(
                        f"/api/v1/issuers/{issuer_id}", json={"type": "localca", "config": config}
                    ).raise_for_status()
            started = time.perf_counter()
            cpu0 = server.cpu_seconds()
            serials, ca = _issue_many(server.url, token, "bench", certs)
            issue_s = time.perf_counter() - started
            issue_cpu = server.cpu_seconds() - cpu0
            expected = mix.Expected(tuple(serials), mix.choose_revoked(serials, revoked_fraction))
            _revoke_many(server.url, token, "bench", expected.revoked)
            out["setup"] = {
                "issued_per_second_api": round(certs / issue_s, 1),
                "server_cpu_ms_per_issuance": round(issue_cpu / certs * 1e3, 3),
                "revoked": len(expected.revoked),
            }

            ours = mix.requests_for(ca, serials)
            ours_post, ours_get = mix.write_wrk_inputs(workdir, "ours", ours)
            baseline = mix.OpenSSLResponder(workdir, expected)
            theirs = mix.requests_for(baseline.ca, serials)
            theirs_post, theirs_get = mix.write_wrk_inputs(workdir, "openssl", theirs)
            script = workdir / "mix.lua"
            script.write_text(mix.LUA)

            ocsp_path = "/.well-known/pki/ocsp/bench"

            def openssl_run(check: bool, mode: str, inputs: Path) -> dict[str, Any]:
                # A fresh openssl per run: OpenSSL 3.0's -multi workers spin on a
                # connection the client closed, so one left over would eat a core.
                openssl = _OpenSSL(lambda port: baseline.argv(port, openssl_processes))
                try:
                    if check:
                        out["checked_answers"] += _check_sample(
                            openssl.url, baseline.ca, theirs, expected
                        )
                        return {}
                    path = "/" if mode == "post" else ""
                    return _mix_wrk(load, script, openssl.url, path, mode, inputs)
                finally:
                    openssl.stop()

            out["checked_answers"] = _check_sample(server.url + ocsp_path, ca, ours, expected)
            openssl_run(True, "", theirs_post)
            clock = time.perf_counter()
            figures: dict[str, dict[str, Any]] = {}
            # A first pass over the mix, reported on its own: it signs every nonce-less
            # answer once (a responder that has been up for a while has them; openssl has
            # nothing to warm). The GET mix asks the same requests: warm after the POSTs.
            warm = [f"-t{threads}", f"-c{connections}", f"-d{max(1, seconds // 2)}s"]
            figures["first_pass_post"] = _mix_wrk(
                warm, script, server.url, ocsp_path, "post", ours_post
            )
            cpu_before = server.cpu_seconds()
            figures["post"] = _mix_wrk(load, script, server.url, ocsp_path, "post", ours_post)
            cpu_mid = server.cpu_seconds()
            figures["openssl_post"] = openssl_run(False, "post", theirs_post)
            cpu_mid2 = server.cpu_seconds()
            figures["get"] = _mix_wrk(load, script, server.url, ocsp_path, "get", ours_get)
            cpu_after = server.cpu_seconds()
            figures["openssl_get"] = openssl_run(False, "get", theirs_get)
            out["wall_seconds"] = round(time.perf_counter() - clock, 1)

            for key in ("post", "get"):
                served = figures[key]["requests"] or 1
                spent = (cpu_mid - cpu_before) if key == "post" else (cpu_after - cpu_mid2)
                figures[key]["server_cpu_us_per_request"] = round(spent / served * 1e6, 1)

            crl_url = f"{server.url}/.well-known/pki/crl/crl"
            with httpx.Client(timeout=60, trust_env=False) as client:
                first = client.get(crl_url)
                first.raise_for_status()
                etag = first.headers["etag"]
                crl_bytes = len(first.content)
                again = client.get(crl_url, headers={"If-None-Match": etag})
                if again.status_code != 304:
                    raise RuntimeError(f"CRL revalidation answered {again.status_code}")
            crl_script = workdir / "crl.lua"
            crl_script.write_text(_LUA_HEADER)
            crl_full = _wrk([*load, "-s", str(crl_script), crl_url])
            crl_304 = _wrk(
                [*load, "-s", str(crl_script), crl_url],
                env={**os.environ, "CERTCTL_BENCH_ETAG": etag},
            )
        finally:
            server.stop()

    def ratio(a: dict[str, Any], b: dict[str, Any]) -> float:
        return round(
            float(a["requests_per_second"]) / max(float(b["requests_per_second"]), 1e-9), 2
        )

    out.update(
        {
            "first_pass_post_mix": figures["first_pass_post"],
            "post_mix": figures["post"],
            "get_mix": figures["get"],
            "openssl_post_mix": figures["openssl_post"],
            "openssl_get_mix": figures["openssl_get"],
            "ratio_post": ratio(figures["post"], figures["openssl_post"]),
            "ratio_get": ratio(figures["get"], figures["openssl_get"]),
            "openssl_processes": openssl_processes,
            "crl": {
                "entries": crl_entries,
                "bytes": crl_bytes,
                "full": crl_full,
                "revalidated_304": crl_304,
            },
            # The summary keys earlier reports had (the POST form):
            "requests_per_second": figures["post"]["requests_per_second"],
            "p50_ms": figures["post"]["p50_ms"],
            "p99_ms": figures["post"]["p99_ms"],
            "non_2xx": sum(f["non_2xx"] for f in figures.values()),
        }
    )
    from benchmarks._common import render_table

    def row(label: str, fig: dict[str, Any], against: dict[str, Any] | None) -> list[Any]:
        return [
            label,
            f"{fig['requests_per_second']:,.0f}",
            fig["p50_ms"],
            fig["p99_ms"],
            fig["non_2xx"] + fig["socket_errors"],
            "" if against is None else ratio(fig, against),
        ]

    rows = [
        row(
            "server, POST mix, first pass (cold)",
            figures["first_pass_post"],
            figures["openssl_post"],
        ),
        row("server, POST mix", figures["post"], figures["openssl_post"]),
        row(f"openssl ocsp -multi {openssl_processes}, POST mix", figures["openssl_post"], None),
        row("server, GET mix", figures["get"], figures["openssl_get"]),
        row(f"openssl ocsp -multi {openssl_processes}, GET mix", figures["openssl_get"], None),
        row(f"CRL, {crl_entries:,} entries ({crl_bytes / 1e6:.1f} MB), full", crl_full, None),
        row("CRL, If-None-Match (304)", crl_304, None),
    ]
    out["table"] = render_table(
        f"OCSP and CRL over HTTP on loopback, Local CA, {certs:,} certificates, "
        f"{revoked_fraction:.0%} revoked, half the requests with a nonce (wrk -t{threads} "
        f"-c{connections} -d{seconds}s; servers and wrk share {os.cpu_count()} cores)",
        ["responder / request", "requests/s", "p50 ms", "p99 ms", "errors", "ratio"],
        rows,
    )
    return out


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m benchmarks.ocsp_http_bench")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--certs", type=int, default=10_000)
    parser.add_argument("--crl-entries", type=int, default=100_000)
    args = parser.parse_args()
    result = run(seconds=args.seconds, certs=args.certs, crl_entries=args.crl_entries)
    print(result.pop("table"))
    print(json.dumps(result, indent=2))
