"""The benchmark suite: ``python -m benchmarks [--smoke] [--out FILE] [--only PARTS]``.

Runs, in one process on one machine: step-ca issuance (raw baseline client against the
certctl connector, same real step-ca), the connector's micro figures, the Local CA
(CRL, OCSP signing, issuance) and, when ``wrk`` and the reference server are available,
OCSP over HTTP on loopback. Prints tables and writes one JSON document (schema
``certctl-bench/1``, described in docs/performance.md). ``--smoke`` runs tiny sizes: it
proves the suite works and its JSON is well formed, and its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import api_issue_bench, localca_bench, ocsp_http_bench, stepca_bench
from benchmarks._common import machine, render_table

SCHEMA = "certctl-bench/1"
PARTS = ("stepca", "localca", "ocsp_http", "api_issue")

SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "full": {
        "stepca": {"sequential": 300, "concurrent": 600, "rounds": 3, "micro_count": 2000},
        "localca": {
            "sizes": (10_000, 100_000, 1_000_000),
            "baseline_max": 100_000,
            "ocsp": 20_000,
            "issue": 300,
        },
        "ocsp_http": {
            "seconds": 10,
            "connections": 16,
            "threads": 2,
            "certs": 10_000,
            "crl_entries": 100_000,
        },
        "api_issue": {"count": 200, "rounds": 3},
    },
    "smoke": {
        "stepca": {"sequential": 16, "concurrent": 32, "rounds": 1, "micro_count": 20},
        "localca": {"sizes": (100, 1000), "baseline_max": 1000, "ocsp": 100, "issue": 10},
        "ocsp_http": {
            "seconds": 1,
            "connections": 2,
            "threads": 1,
            "certs": 40,
            "crl_entries": 1000,
        },
        "api_issue": {"count": 8, "rounds": 1},
    },
}


def _goal(name: str, target: str, value: float | None, met: bool | None) -> dict[str, Any]:
    return {"name": name, "target": target, "value": value, "met": met}


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's goals, each with the measured value and whether it was met."""
    out: list[dict[str, Any]] = []
    stepca = results.get("stepca")
    if stepca:
        seq, conc = stepca["ratio_sequential"], stepca["ratio_concurrent"]
        out.append(_goal("step-ca sequential: connector / baseline", ">= 1.0", seq, seq >= 1.0))
        out.append(
            _goal(
                "step-ca concurrent: connector 8 tasks / baseline 8 threads",
                ">= 1.0",
                conc,
                conc >= 1.0,
            )
        )
    localca = results.get("localca")
    if localca:
        sizes = {row["entries"]: row for row in localca["crl"]["sizes"]}
        million = sizes.get(1_000_000)
        seconds = million["encode_sign_s"] if million else None
        out.append(
            _goal(
                "Local CA: 1,000,000-entry CRL encoded and signed",
                "< 5 s",
                seconds,
                None if seconds is None else seconds < 5.0,
            )
        )
        linearity = localca["crl"]["linearity"]
        out.append(
            _goal(
                "Local CA: CRL cost per entry, largest / next largest size (linear)",
                "<= 1.5",
                linearity,
                linearity <= 1.5,
            )
        )
        rate = localca["ocsp"]["signed_per_second"]
        out.append(
            _goal(
                "Local CA: OCSP responses signed per second (ADR 0010)",
                ">= 10000",
                rate,
                rate >= 10_000,
            )
        )
    ocsp_http = results.get("ocsp_http")
    if ocsp_http and ocsp_http.get("status") == "ok":
        for form in ("post", "get"):
            ratio = ocsp_http[f"ratio_{form}"]
            out.append(
                _goal(
                    f"OCSP {form.upper()} mix: server / openssl ocsp -multi 2 (same run)",
                    ">= 1.5",
                    ratio,
                    ratio >= 1.5,
                )
            )
            p99 = ocsp_http[f"{form}_mix"]["p99_ms"]
            out.append(_goal(f"OCSP {form.upper()} mix: p99 ms", "<= 10", p99, p99 <= 10))
        crl = ocsp_http["crl"]
        for key, label in (("full", "full body"), ("revalidated_304", "If-None-Match")):
            rate = crl[key]["requests_per_second"]
            out.append(
                _goal(
                    f"CRL of {crl['entries']:,} entries, {label}: requests/s",
                    ">= 1000",
                    rate,
                    rate >= 1000,
                )
            )
    api = results.get("api_issue")
    if api:
        for shape in ("sequential", "concurrent"):
            ratio = api[f"ratio_{shape}"]
            out.append(
                _goal(
                    f"issuance through the API / the registry, {shape} (same step-ca)",
                    ">= 0.9",
                    ratio,
                    ratio >= 0.9,
                )
            )
    return out


def _goals_table(items: list[dict[str, Any]]) -> str:
    def verdict(met: bool | None) -> str:
        return "not measured" if met is None else ("met" if met else "NOT met")

    return render_table(
        "Goals",
        ["goal", "target", "measured", "verdict"],
        [[g["name"], g["target"], g["value"], verdict(g["met"])] for g in items],
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the suite runs")
    parser.add_argument("--out", type=Path, help="write the JSON here (default: stdout only)")
    parser.add_argument(
        "--only", default=",".join(PARTS), help=f"comma-separated parts of {', '.join(PARTS)}"
    )
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    size = "smoke" if args.smoke else "full"
    sizes = SIZES[size]

    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "stepca": lambda: asyncio.run(stepca_bench.run(**sizes["stepca"])),
        "localca": lambda: localca_bench.run(**sizes["localca"]),
        "ocsp_http": lambda: ocsp_http_bench.run(**sizes["ocsp_http"]),
        "api_issue": lambda: api_issue_bench.run(**sizes["api_issue"]),
    }
    started = dt.datetime.now(dt.UTC)
    clock = time.perf_counter()
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "size": size,
        "started_at": started.isoformat(timespec="seconds"),
        "machine": machine(),
    }
    tables: list[str] = []
    for part in PARTS:
        if part not in parts:
            continue
        print(f"==> {part}", file=sys.stderr, flush=True)
        part_clock = time.perf_counter()
        result = runners[part]()
        result["seconds"] = round(time.perf_counter() - part_clock, 1)
        tables.append(result.pop("table"))
        report[part] = result
    report["goals"] = goals(report)
    report["duration_s"] = round(time.perf_counter() - clock, 1)
    tables.append(_goals_table(report["goals"]))

    print(
        f"certctl benchmarks ({size}), {started:%Y-%m-%d %H:%M} UTC, "
        f"{report['machine']['cores']} cores: {report['machine']['cpu']}"
    )
    print("\n".join(tables))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nJSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
