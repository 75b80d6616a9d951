"""Benchmark the local CA: CRL generation, OCSP responses, issuance.

Part of the suite (``python -m benchmarks``); alone: ``.venv/bin/python -m
benchmarks.localca_bench [--sizes 10000,100000,1000000] [--baseline-max 100000]
[--ocsp 20000] [--issue 300]``.

Each figure is measured against ``cryptography``'s own builder in the same run. The CRL
has two baselines (ADR 0019): the builder given the whole entry list at once (linear; the
fair one, and the ratio that matters), built cold and re-signed from cached
``RevokedCertificate`` objects; and chained ``add_revoked_certificate`` calls, quadratic,
run only up to ``--baseline-max`` entries and extrapolated beyond (marked ``~``). The
1,000,000-entry CRL is checked by parsing it with ``cryptography`` and with ``openssl crl``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import CRLEntryExtensionOID, NameOID

from benchmarks._common import render_table, timed
from certctl_core import CertificateRequest, RevocationReason
from certctl_core.revocation import Signer
from certctl_localca import LocalCAIssuer, build_localca_issuer
from certctl_localca._crl import CRLEncoder
from certctl_localca._ledger import Ledger, RevokedRow

PASSWORD = "benchmark-only-password"  # noqa: S105 - a throwaway CA


def revoked_rows(count: int, seed: int = 5280) -> list[RevokedRow]:
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not keys
    base = 1_780_000_000
    return [
        ((1 << 158) | rng.getrandbits(158), base + i, rng.choice((0, 1, 4, 5)), i + 1)
        for i in range(count)
    ]


def crypto_crl(key: ec.EllipticCurvePrivateKey, issuer: x509.Name, rows: list[RevokedRow]) -> bytes:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer)
        .last_update(now)
        .next_update(now + dt.timedelta(days=1))
        .add_extension(x509.CRLNumber(1), critical=False)
    )
    for serial, at, reason, _ in rows:
        entry = x509.RevokedCertificateBuilder().serial_number(serial)
        entry = entry.revocation_date(dt.datetime.fromtimestamp(at, dt.UTC))
        if reason:
            flag = RevocationReason(reason).x509_flag
            entry = entry.add_extension(x509.CRLReason(flag), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def builder_entries(rows: list[RevokedRow]) -> list[x509.RevokedCertificate]:
    """The rows as ``cryptography`` objects (what a builder-based connector would cache)."""
    flags = {int(r): x509.CRLReason(r.x509_flag) for r in RevocationReason}
    oid = CRLEntryExtensionOID.CRL_REASON
    return [
        x509.RevokedCertificateBuilder(
            serial,
            dt.datetime.fromtimestamp(at, dt.UTC),
            [x509.Extension(oid, False, flags[reason])] if reason else [],
        ).build()
        for serial, at, reason, _ in rows
    ]


def builder_list_crl(
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    key_id: bytes,
    entries: list[x509.RevokedCertificate],
    number: int,
    now: int,
) -> bytes:
    """The same CRL as ours (AKI, CRL number), from the builder given the whole list."""
    builder = (
        x509.CertificateRevocationListBuilder(revoked_certificates=entries)
        .issuer_name(issuer)
        .last_update(dt.datetime.fromtimestamp(now, dt.UTC))
        .next_update(dt.datetime.fromtimestamp(now + 86400, dt.UTC))
        .add_extension(x509.AuthorityKeyIdentifier(key_id, None, None), critical=False)
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _time_builder_list(
    key: ec.EllipticCurvePrivateKey, issuer: x509.Name, key_id: bytes, rows: list[RevokedRow]
) -> tuple[float, float]:
    """Seconds for the list builder to build+sign cold, and to re-sign from cached entries."""
    now = int(time.time())
    cached: list[x509.RevokedCertificate] = []

    def build_and_sign() -> bytes:
        cached.extend(builder_entries(rows))
        return builder_list_crl(key, issuer, key_id, cached, 1, now)

    cold, _ = timed(build_and_sign)
    warm, _ = timed(lambda: builder_list_crl(key, issuer, key_id, cached, 2, now))
    return cold, warm


def check_crl(der: bytes, key: ec.EllipticCurvePrivateKey, count: int, workdir: Path) -> str:
    crl = x509.load_der_x509_crl(der)
    assert len(crl) == count, (len(crl), count)
    assert crl.is_signature_valid(key.public_key())
    path = workdir / "big.crl"
    path.write_bytes(der)
    result = subprocess.run(
        ["openssl", "crl", "-inform", "DER", "-in", str(path), "-noout"],
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return "cryptography + openssl crl parse it"


def _time_ours(
    signer: Signer, issuer: x509.Name, key_id: bytes, rows: list[RevokedRow], workdir: Path
) -> tuple[float, float, float, bytes]:
    """Seconds to encode+sign, to re-sign from cache, and to load+encode+sign from SQLite."""
    encoder = CRLEncoder(signer, issuer.public_bytes(), key_id)
    now = int(time.time())

    def encode_and_sign() -> bytes:
        encoder.add_many(rows)
        return encoder.sign(1, now, now + 86400)

    cold, _ = timed(encode_and_sign)
    warm, der = timed(lambda: encoder.sign(2, now, now + 86400))
    # Cold start of a connector: ledger rows read from SQLite, encoded, signed.
    state = workdir / f"ledger-{len(rows)}"
    state.mkdir()
    ledger = Ledger.open(state)
    ledger.import_revoked((s, at, at + 86400 * 90, RevocationReason(r)) for s, at, r, _ in rows)
    fresh = CRLEncoder(signer, issuer.public_bytes(), key_id)

    def load_encode_and_sign() -> bytes:
        fresh.add_many(ledger.revocations_since(0))
        return fresh.sign(1, now, now + 86400)

    from_db, _ = timed(load_encode_and_sign)
    ledger.close()
    return cold, warm, from_db, der


def _time_theirs(
    key: ec.EllipticCurvePrivateKey, issuer: x509.Name, rows: list[RevokedRow]
) -> float:
    seconds, _ = timed(lambda: crypto_crl(key, issuer, rows))
    return seconds


def bench_crl(sizes: list[int], baseline_max: int, workdir: Path) -> dict[str, Any]:
    """CRL encode+sign per size, with cryptography's builders as the baselines."""
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench CA")])
    key_id = x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest
    signer = Signer.for_key(key)
    rows_out: list[dict[str, Any]] = []
    baseline: dict[int, float] = {}
    for size in sizes:
        rows = revoked_rows(size)
        cold, warm, from_db, der = _time_ours(signer, issuer, key_id, rows, workdir)
        list_cold, list_warm = _time_builder_list(key, issuer, key_id, rows)
        extrapolated = size > baseline_max
        if not extrapolated:
            theirs = _time_theirs(key, issuer, rows)
            baseline[size] = theirs
        else:
            known = max(baseline) if baseline else None
            theirs = baseline[known] * (size / known) ** 2 if known else float("nan")
        checked = check_crl(der, key, size, workdir) if size == max(sizes) else ""
        rows_out.append(
            {
                "entries": size,
                "megabytes": round(len(der) / 1e6, 2),
                "encode_sign_s": round(cold, 4),
                "from_sqlite_s": round(from_db, 4),
                "resign_cached_s": round(warm, 5),
                "cryptography_builder_s": round(theirs, 3),
                "cryptography_builder_extrapolated": extrapolated,
                "speedup": round(theirs / cold, 1),
                "builder_list_s": round(list_cold, 4),
                "builder_list_resign_s": round(list_warm, 4),
                "ratio_builder_list": round(list_cold / cold, 2),
                "ratio_builder_list_resign": round(list_warm / warm, 1),
                "microseconds_per_entry": round(cold / size * 1e6, 3),
                "checked_with": checked,
            }
        )
    # 1.0 = perfectly linear: per-entry cost at the largest size over the next largest
    # (the smallest sizes are dominated by the fixed cost of one signature).
    first, last = rows_out[-2] if len(rows_out) > 1 else rows_out[0], rows_out[-1]
    return {
        "sizes": rows_out,
        "linearity": round(last["microseconds_per_entry"] / first["microseconds_per_entry"], 2),
    }


def _crl_table(crl: dict[str, Any]) -> str:
    rows = [
        [
            f"{r['entries']:,}",
            f"{r['megabytes']:.1f}",
            f"{r['encode_sign_s']:.3f}",
            f"{r['from_sqlite_s']:.3f}",
            f"{r['resign_cached_s']:.4f}",
            f"{r['builder_list_s']:.3f}",
            f"{r['ratio_builder_list']:.1f}x",
            f"{r['builder_list_resign_s']:.4f}",
            f"{r['ratio_builder_list_resign']:.0f}x",
            ("~" if r["cryptography_builder_extrapolated"] else "")
            + f"{r['cryptography_builder_s']:.2f}",
            r["checked_with"],
        ]
        for r in crl["sizes"]
    ]
    return (
        render_table(
            "Local CA: CRL generation and signing (seconds, EC P-256; builder = cryptography's "
            "builder given the whole list; chained = add_revoked_certificate, quadratic, "
            "~ = extrapolated)",
            [
                "entries",
                "MB",
                "encode+sign",
                "from SQLite",
                "re-sign cached",
                "builder",
                "ratio",
                "builder re-sign",
                "ratio",
                "chained",
                "check",
            ],
            rows,
        )
        + f"\nlinearity (per-entry cost, largest / next largest size): {crl['linearity']}\n"
    )


def make_csr() -> x509.CertificateSigningRequest:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench.example.test")])
    san = x509.SubjectAlternativeName([x509.DNSName("bench.example.test")])
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(name)
        .add_extension(san, critical=False)
        .sign(key, hashes.SHA256())
    )


async def bench_service(workdir: Path, ocsp_count: int, issue_count: int) -> dict[str, Any]:
    ca = await build_localca_issuer(
        "bench", {"state_dir": str(workdir / "svc"), "key_password": PASSWORD}
    )
    assert isinstance(ca, LocalCAIssuer)
    try:
        return await _bench_issue_and_ocsp(ca, ocsp_count, issue_count)
    finally:
        await ca.close()


async def _bench_issue_and_ocsp(
    ca: LocalCAIssuer, ocsp_count: int, issue_count: int
) -> dict[str, Any]:
    csrs = [make_csr() for _ in range(issue_count)]
    start = time.perf_counter()
    issued = [await ca.issue(CertificateRequest.from_csr(c)) for c in csrs]
    sequential = issue_count / (time.perf_counter() - start)
    start = time.perf_counter()
    await asyncio.gather(*(ca.issue(CertificateRequest.from_csr(c)) for c in csrs))
    concurrent = issue_count / (time.perf_counter() - start)
    for revoked in issued[: len(issued) // 2]:
        await ca.revoke(revoked.serial, RevocationReason.KEY_COMPROMISE)
    by_serial = {i.serial: i.certificate for i in issued}

    inter = (await ca.ca_chain())[0]
    requests = []
    for i in range(ocsp_count):
        leaf = issued[i % len(issued)].certificate
        sha1 = hashes.SHA1()  # noqa: S303 - what OCSP clients (openssl) send by default
        req_builder = ocsp.OCSPRequestBuilder().add_certificate(leaf, inter, sha1)
        nonce = x509.OCSPNonce(secrets.token_bytes(16))
        req_builder = req_builder.add_extension(nonce, critical=False)
        requests.append(req_builder.build().public_bytes(serialization.Encoding.DER))
    await ca.ocsp(requests[0])  # creates the responder certificate
    start = time.perf_counter()
    for request_der in requests:
        await ca.ocsp(request_der)
    ours = ocsp_count / (time.perf_counter() - start)

    # Baseline: cryptography's OCSPResponseBuilder with the same responder and lookups.
    current = ca._responder  # the benchmark borrows the connector's responder key
    assert current is not None
    responder, responder_key = current.certificate, current.signer.key
    baseline_count = max(1, ocsp_count // 4)
    start = time.perf_counter()
    for request_der in requests[:baseline_count]:
        parsed = ocsp.load_der_ocsp_request(request_der)
        status = await ca.status(parsed.serial_number)
        now = dt.datetime.now(dt.UTC)
        resp_builder = ocsp.OCSPResponseBuilder().add_response(
            cert=by_serial[parsed.serial_number],
            issuer=inter,
            algorithm=hashes.SHA1(),  # noqa: S303 - matches the requests
            cert_status=ocsp.OCSPCertStatus.GOOD
            if status.state == "good"
            else ocsp.OCSPCertStatus.REVOKED,
            this_update=now,
            next_update=now + dt.timedelta(hours=1),
            revocation_time=status.revoked_at,
            revocation_reason=status.reason.x509_flag if status.reason else None,
        )
        resp_builder = resp_builder.responder_id(ocsp.OCSPResponderEncoding.HASH, responder)
        resp_builder = resp_builder.certificates([responder])
        for ext in parsed.extensions:
            resp_builder = resp_builder.add_extension(ext.value, critical=ext.critical)
        signed = resp_builder.sign(responder_key, hashes.SHA256())
        signed.public_bytes(serialization.Encoding.DER)
    theirs = baseline_count / (time.perf_counter() - start)
    return {
        "issuance": {
            "sequential_per_second": round(sequential, 1),
            "concurrent_per_second": round(concurrent, 1),
            "count": issue_count,
        },
        "ocsp": {
            "signed_per_second": round(ours, 1),
            "cryptography_builder_per_second": round(theirs, 1),
            "ratio": round(ours / theirs, 2),
            "count": ocsp_count,
        },
    }


def _service_table(service: dict[str, Any]) -> str:
    ocsp, issuance = service["ocsp"], service["issuance"]
    return render_table(
        "Local CA: OCSP responses signed in process, one core (per second, nonce, P-256)",
        ["ours (hand-encoded)", "cryptography OCSPResponseBuilder", "ratio"],
        [
            [
                f"{ocsp['signed_per_second']:,.0f}",
                f"{ocsp['cryptography_builder_per_second']:,.0f}",
                f"{ocsp['ratio']:.1f}x",
            ]
        ],
    ) + render_table(
        "Local CA: issuance through the connector (certificates per second, P-256 CA)",
        ["sequential", "concurrent (gather)"],
        [
            [
                f"{issuance['sequential_per_second']:,.0f}",
                f"{issuance['concurrent_per_second']:,.0f}",
            ]
        ],
    )


def run(
    *,
    sizes: Sequence[int] = (10_000, 100_000, 1_000_000),
    baseline_max: int = 100_000,
    ocsp: int = 20_000,
    issue: int = 300,
) -> dict[str, Any]:
    """Run the Local CA benchmarks; JSON-ready results with a ``table`` text."""
    with tempfile.TemporaryDirectory(prefix="certctl-bench-localca-") as tmp:
        workdir = Path(tmp)
        crl = bench_crl(sorted(sizes), baseline_max, workdir)
        service = asyncio.run(bench_service(workdir, ocsp, issue))
    out: dict[str, Any] = {"crl": crl, **service}
    out["table"] = _crl_table(crl) + _service_table(service)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--baseline-max", type=int, default=100_000)
    parser.add_argument("--ocsp", type=int, default=20_000)
    parser.add_argument("--issue", type=int, default=300)
    args = parser.parse_args(argv)
    result = run(
        sizes=[int(s) for s in args.sizes.split(",")],
        baseline_max=args.baseline_max,
        ocsp=args.ocsp,
        issue=args.issue,
    )
    print(result.pop("table"))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
