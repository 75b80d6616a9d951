"""The benchmark suite runs at smoke size and writes well-formed JSON.

Only the shape of the report is checked, never a timing: speed is the benchmark's
business (``scripts/bench.sh``), and a timed assertion on a shared machine would be
flaky. A run that cannot start step-ca or the Local CA fails here.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.stepca]

LATENCY = {
    "per_second",
    "per_second_rounds",
    "median_ms",
    "p95_ms",
    "p99_ms",
    "client_cpu_ms_per_issuance",
}
MICRO = {
    "token_mint_connector_us",
    "token_mint_baseline_jwcrypto_us",
    "key_and_csr_us",
    "policy_us",
    "connector_verification_us",
    "connector_build_ms",
    "hot_swap_idle_ms",
    "hot_swap_under_load_ms",
    "hot_swap_under_load_issued",
    "hot_swap_under_load_failures",
    "http_cpu_us_httpx_async",
    "http_cpu_us_httpx_sync",
    "http_cpu_us_httpcore_sync",
    "http_cpu_us_asyncio_h11",
}
CRL_ROW = {
    "entries",
    "megabytes",
    "encode_sign_s",
    "from_sqlite_s",
    "resign_cached_s",
    "cryptography_builder_s",
    "cryptography_builder_extrapolated",
    "speedup",
    "microseconds_per_entry",
    "checked_with",
}


def _number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _numbers(doc: dict[str, Any], keys: set[str], where: str) -> None:
    assert keys <= set(doc), f"{where}: missing {sorted(keys - set(doc))}"
    for key in keys:
        value = doc[key]
        values = value if isinstance(value, list) else [value]
        assert values, f"{where}.{key} is empty"
        assert all(_number(v) for v in values), f"{where}.{key} = {value!r} is not a number >= 0"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "smoke.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "### Goals" in result.stdout  # the table is printed too
    doc = json.loads(out.read_text())
    assert isinstance(doc, dict)
    return doc


def test_report_has_schema_size_and_machine_when_run_at_smoke_size(report: dict[str, Any]) -> None:
    assert report["schema"] == "certctl-bench/1"
    assert report["size"] == "smoke"
    assert isinstance(report["started_at"], str)
    assert _number(report["duration_s"])
    machine = report["machine"]
    assert isinstance(machine["cpu"], str)
    assert isinstance(machine["cores"], int)
    assert {"cryptography", "httpx", "httpcore"} <= set(machine["libraries"])


def test_stepca_part_has_baseline_connector_ratios_and_micro_figures(
    report: dict[str, Any],
) -> None:
    stepca = report["stepca"]
    for key in (
        "baseline_sequential",
        "baseline_8_threads",
        "connector_sequential",
        "connector_8_tasks",
    ):
        _numbers(stepca[key], LATENCY, f"stepca.{key}")
        assert len(stepca[key]["per_second_rounds"]) == stepca["sizes"]["rounds"]
    _numbers(stepca, {"ratio_sequential", "ratio_concurrent"}, "stepca")
    assert "async_transport_sequential" not in stepca  # the injected path is gone
    assert stepca["ratio_sequential"] > 0
    _numbers(stepca["micro"], MICRO, "stepca.micro")
    assert stepca["micro"]["hot_swap_under_load_failures"] == 0  # correctness, not speed


def test_localca_part_has_crl_rows_ocsp_and_issuance(report: dict[str, Any]) -> None:
    localca = report["localca"]
    rows = localca["crl"]["sizes"]
    assert [row["entries"] for row in rows] == [100, 1000]
    for row in rows:
        assert set(row) >= CRL_ROW
        _numbers(row, CRL_ROW - {"cryptography_builder_extrapolated", "checked_with"}, "crl")
    assert "openssl crl" in rows[-1]["checked_with"]  # the largest CRL was parsed by openssl
    _numbers(localca["crl"], {"linearity"}, "crl")
    _numbers(
        localca["ocsp"], {"signed_per_second", "cryptography_builder_per_second", "ratio"}, "ocsp"
    )
    _numbers(localca["issuance"], {"sequential_per_second", "concurrent_per_second"}, "issue")


def test_ocsp_http_part_runs_wrk_against_the_server(report: dict[str, Any]) -> None:
    # scripts/setup.sh installs wrk, so "not run" here is a failure, not a skip.
    part = report["ocsp_http"]
    assert part["status"] == "ok", part.get("reason")
    _numbers(part, {"requests_per_second", "p50_ms", "p99_ms"}, "ocsp_http")
    assert part["non_2xx"] == 0
    # Against openssl ocsp in the same run, both forms of the mix; answers checked first.
    _numbers(part, {"ratio_post", "ratio_get", "checked_answers"}, "ocsp_http")
    assert part["checked_answers"] > 0
    for key in ("post_mix", "get_mix", "openssl_post_mix", "openssl_get_mix"):
        _numbers(part[key], {"requests_per_second", "p99_ms"}, f"ocsp_http.{key}")
        assert part[key]["requests"] > 0, key
    for key in ("full", "revalidated_304"):
        assert part["crl"][key]["requests"] > 0, key


def test_api_issue_part_compares_the_api_with_the_registry(report: dict[str, Any]) -> None:
    part = report["api_issue"]
    _numbers(part, {"ratio_sequential", "ratio_concurrent"}, "api_issue")
    for key in ("registry_sequential", "api_sequential", "registry_8_tasks", "api_8_threads"):
        _numbers(part[key], {"per_second", "cpu_ms_per_issuance"}, f"api_issue.{key}")


def test_goals_name_target_value_and_verdict(report: dict[str, Any]) -> None:
    names = [goal["name"] for goal in report["goals"]]
    assert any("sequential" in n for n in names)
    assert any("concurrent" in n for n in names)
    for goal in report["goals"]:
        assert isinstance(goal["target"], str)
        assert goal["met"] in (True, False, None)
        assert goal["value"] is None or _number(goal["value"])
