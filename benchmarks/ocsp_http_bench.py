"""OCSP over HTTP on loopback: the reference server's Local CA endpoint under ``wrk``.

The server (``python -m certctl_host.server``) runs in its own process with a fresh data
directory, the rate limit raised out of the way and access logs off; a Local CA issuer is
created and one certificate issued through the API. ``wrk`` (Debian's package) then
drives ``/.well-known/pki/ocsp/{issuer}`` in two forms: GET by hex serial, and POST of a
DER OCSPRequest (with a nonce, as ``openssl ocsp`` sends it) through a small Lua script.
One answer of each form is checked first: a successful, signed response saying "good".

Without ``wrk`` or the server, the part reports ``status: not_run`` and the reason.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["parse_wrk", "run"]

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
_LUA_POST = """
local f = assert(io.open(os.getenv("CERTCTL_BENCH_OCSP_REQUEST"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/ocsp-request"
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

    def __init__(self, workdir: Path, token: str) -> None:
        settings = {
            "data_dir": str(workdir / "data"),
            "port": 0,
            "rate_limit_per_second": 1e6,
            "rate_limit_burst": 10_000_000,
            "log_level": "warning",
            "config_poll_seconds": 0,
        }
        path = workdir / "settings.json"
        path.write_text(json.dumps(settings))
        env = {**os.environ, "CERTCTL_API_TOKENS": token}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "certctl_host.server", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # "listening on http://127.0.0.1:PORT"
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"the server did not start: {line!r}")
        self.url = line.split()[-1]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _prepare(server: _Server, token: str, workdir: Path) -> tuple[str, bytes]:
    """A Local CA issuer, one certificate; the hex serial and an OCSP request for it."""
    import httpx
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509 import ocsp

    from benchmarks.stepca_bench import new_csr

    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.url, headers=auth, timeout=60, trust_env=False) as api:
        created = api.put(
            "/api/v1/issuers/bench",
            json={
                "type": "localca",
                "config": {
                    "state_dir": str(workdir / "localca"),
                    "key_password": secrets.token_urlsafe(16),
                },
            },
        )
        created.raise_for_status()
        csr, _ = new_csr()
        issued = api.post(
            "/api/v1/issuers/bench/certificates",
            json={"csr": csr.public_bytes(serialization.Encoding.PEM).decode()},
        )
        issued.raise_for_status()
        doc = issued.json()
        chain = x509.load_pem_x509_certificates(doc["chain"].encode())
        leaf = chain[0]
        issuer = chain[1] if len(chain) > 1 else None
        if issuer is None:
            crl_issuer = api.get("/api/v1/issuers/bench").json()
            raise RuntimeError(f"the issue answer has no CA certificate: {crl_issuer}")
    sha1 = hashes.SHA1()  # noqa: S303 - what OCSP clients (openssl) send by default
    builder = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, sha1)
    builder = builder.add_extension(x509.OCSPNonce(secrets.token_bytes(16)), critical=False)
    return str(doc["serial"]), builder.build().public_bytes(serialization.Encoding.DER)


def _check_answer(body: bytes) -> None:
    from cryptography.x509 import ocsp

    answer = ocsp.load_der_ocsp_response(body)
    if answer.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise RuntimeError(f"OCSP answered {answer.response_status}")
    if answer.certificate_status != ocsp.OCSPCertStatus.GOOD:
        raise RuntimeError(f"OCSP says {answer.certificate_status}, expected good")


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


def run(*, seconds: int = 10, connections: int = 16, threads: int = 2) -> dict[str, Any]:
    """Requests per second and latency percentiles of OCSP over HTTP (JSON-ready)."""
    missing = []
    if shutil.which("wrk") is None:
        missing.append("wrk is not installed (apt-get install wrk; scripts/bench.sh does)")
    if importlib.util.find_spec("certctl_host.server") is None:
        missing.append("the reference server (certctl_host.server) is not in this tree")
    if missing:
        return _not_run("; ".join(missing))

    import httpx

    token = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory(prefix="certctl-bench-ocsp-") as tmp:
        workdir = Path(tmp)
        server = _Server(workdir, token)
        try:
            serial_hex, request_der = _prepare(server, token, workdir)
            get_url = f"{server.url}/.well-known/pki/ocsp/bench/{serial_hex}"
            post_url = f"{server.url}/.well-known/pki/ocsp/bench"
            with httpx.Client(timeout=30, trust_env=False) as client:
                _check_answer(client.get(get_url).content)
                headers = {"Content-Type": "application/ocsp-request"}
                _check_answer(client.post(post_url, content=request_der, headers=headers).content)
            request_file = workdir / "request.der"
            request_file.write_bytes(request_der)
            script = workdir / "post.lua"
            script.write_text(_LUA_POST)
            load = [f"-t{threads}", f"-c{connections}", f"-d{seconds}s"]
            started = time.perf_counter()
            get = _wrk([*load, get_url])
            post = _wrk(
                [*load, "-s", str(script), post_url],
                env={**os.environ, "CERTCTL_BENCH_OCSP_REQUEST": str(request_file)},
            )
            elapsed = time.perf_counter() - started
        finally:
            server.stop()
    out: dict[str, Any] = {
        "status": "ok",
        "load": {"seconds": seconds, "connections": connections, "threads": threads},
        "get_by_serial": get,
        "post_der": post,
        "requests_per_second": post["requests_per_second"],
        "p50_ms": post["p50_ms"],
        "p99_ms": post["p99_ms"],
        "non_2xx": get["non_2xx"] + post["non_2xx"],
        "wall_seconds": round(elapsed, 1),
    }
    rows = [
        [label, f"{fig['requests_per_second']:,.0f}", fig["p50_ms"], fig["p99_ms"], fig["non_2xx"]]
        for label, fig in (("GET by hex serial", get), ("POST DER request (nonce)", post))
    ]
    from benchmarks._common import render_table

    out["table"] = render_table(
        f"OCSP over HTTP on loopback, Local CA (wrk -t{threads} -c{connections} "
        f"-d{seconds}s; server and wrk share the machine's {os.cpu_count()} cores)",
        ["request", "requests/s", "p50 ms", "p99 ms", "non-2xx"],
        rows,
    )
    return out
